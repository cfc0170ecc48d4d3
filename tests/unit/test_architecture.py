"""The package's layers, checked on its imports (docs/architecture.md draws the same picture).

- the **floor** (``schema``, ``config``, ``db``, ``errors``, ``logs``, ``locks``, ``jars``, ``job_runs``,
  ``kafka_offsets``) imports nothing above it;
- each **stage** (``replay``, ``stream``, ``dashboard``, ``lakehouse``) imports the floor and itself, never another
  stage and never ``ops``;
- **ops** may import anything below it; nothing imports a CLI (``ops.stack``, ``stream.cli``,
  ``replay.cli``): entry points drive them, not the other way round;
- no import circle anywhere, counting imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stockpulse.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "stockpulse"
FLOOR = {"schema", "config", "db", "errors", "logs", "locks", "jars", "kafka_offsets", "job_runs"}
STAGES = {"replay", "stream", "dashboard", "lakehouse"}
CLIS = {"stockpulse.ops.stack", "stockpulse.stream.cli", "stockpulse.replay.cli",
        "stockpulse.ops.services.airflow_standalone", "stockpulse.ops.cluster"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str) -> str | None:
    """The project module an import names (``from a.b import c`` may name module a.b.c)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = resolve(name) if name.startswith("stockpulse") else None
            if target and target != module and target != "stockpulse":
                found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return "floor" if parts[1] in FLOOR else parts[1] if parts[1] in STAGES else "ops" if parts[1] == "ops" else "?"


def test_every_module_belongs_to_a_layer():
    assert [m for m in MODULES if layer(m) == "?"] == []


def test_the_floor_imports_only_the_floor():
    bad = {m: sorted(t for t in targets if layer(t) != "floor") for m, targets in GRAPH.items() if layer(m) == "floor"}
    assert {m: t for m, t in bad.items() if t} == {}


def test_a_stage_imports_only_the_floor_and_itself():
    bad = {m: sorted(t for t in targets if layer(t) not in ("floor", layer(m)))
           for m, targets in GRAPH.items() if layer(m) in STAGES}
    assert {m: t for m, t in bad.items() if t} == {}


def test_nothing_imports_a_cli():
    bad = {m: sorted(targets & CLIS) for m, targets in GRAPH.items()}
    assert {m: t for m, t in bad.items() if t} == {}


def test_no_import_circle():
    """Tarjan's strongly connected components: any component with two modules is a circle."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert circles == []


@pytest.mark.parametrize("importer, imported, allowed", [
    ("stockpulse.stream.job", "stockpulse.ops.stack", False),
    ("stockpulse.stream.job", "stockpulse.replay.csv_rows", False),
    ("stockpulse.ops.health", "stockpulse.stream.job_files", True),
])
def test_the_rules_can_fail(importer, imported, allowed):
    """The checks above see a forbidden edge when one exists (a planted edge, not a real one)."""
    rule_ok = layer(imported) in ("floor", layer(importer)) or layer(importer) == "ops"
    assert (rule_ok and imported not in CLIS) is allowed
