"""The JVM class archive against a real JVM: what it writes, and what a cut-short archive does."""

from __future__ import annotations

import subprocess

import pytest

from stockpulse.stream.class_archive import ArchivePlan, java_binary, maps, promote

JAVA = java_binary()
pytestmark = pytest.mark.skipif(JAVA is None, reason="no java on PATH")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """An archive a real JVM wrote at exit, under its temporary name."""
    directory = tmp_path_factory.mktemp("cds")
    archive = ArchivePlan(directory / "k.jsa", directory / "k.jsa.1.partial")
    result = subprocess.run([str(JAVA), *archive.java_options, "-version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and archive.training.stat().st_size > 0, result.stderr
    assert "[warning]" not in result.stdout  # the writer's notes on classes it leaves out stay quiet
    return archive


def test_a_truncated_archive_kills_the_jvm_so_it_is_never_promoted(written, tmp_path):
    cut = tmp_path / "cut.jsa"
    cut.write_bytes(written.training.read_bytes()[: written.training.stat().st_size // 2])
    crashed = subprocess.run([str(JAVA), f"-XX:SharedArchiveFile={cut}", "-version"], capture_output=True,
                             timeout=120, cwd=tmp_path)  # its crash report lands in tmp_path
    assert crashed.returncode != 0  # SIGBUS: why only a checked archive gets the name JVMs map
    assert not maps(JAVA, cut)
    assert not promote(ArchivePlan(tmp_path / "k.jsa", cut), JAVA, 0) and not (tmp_path / "k.jsa").exists()


def test_a_whole_archive_is_promoted_and_mapped(written):
    assert promote(written, JAVA, 0)
    used = subprocess.run([str(JAVA), *ArchivePlan(written.path).java_options, "-Xshare:on", "-version"],
                          capture_output=True, text=True, timeout=120)
    assert used.returncode == 0 and "sharing" in used.stderr, used.stderr  # -Xshare:on fails unless it maps
