"""The lock file keeps Airflow from breaking Spark (see docs/airflow.md, "One venv, not two")."""

from __future__ import annotations

import re

from stockpulse.config import PROJECT_ROOT


def locked_names() -> set[str]:
    """Normalised (PEP 503) names of the pinned distributions."""
    names = set()
    for line in (PROJECT_ROOT / "requirements-lock.txt").read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[|==|>=|<=|~=|@|;|$)", line)
        if match and not line.lstrip().startswith(("#", "-")):
            names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def test_pyspark_client_is_never_locked():
    """apache-airflow-providers-apache-spark pulls pyspark-client, which overwrites pyspark's files."""
    names = locked_names()
    assert "pyspark" in names and "apache-airflow" in names  # the parser sees the real pins
    assert "pyspark-client" not in names
    assert "apache-airflow-providers-apache-spark" not in names
