"""The JVM class archive's bookkeeping: keys, plans, promotion and pruning, with a stand-in ``java``
(the real JVM's side is in tests/integration/stream/test_class_archive.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stockpulse.config import ConsumerSettings
from stockpulse.stream import class_archive
from stockpulse.stream.class_archive import ArchivePlan, archive_key, plan, promote, prune, remove_stale
from stockpulse.stream.job import class_archive_plan


def fake_java(tmp_path: Path, exit_code: int = 0) -> Path:
    """A ``bin/java`` in a JDK-shaped tree that exits with ``exit_code`` whatever it is asked."""
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    (tmp_path / "jdk" / "lib").mkdir()
    (tmp_path / "jdk" / "lib" / "modules").write_bytes(b"modules")
    java.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    java.chmod(0o755)
    return java


def jar(tmp_path: Path, name: str, content: bytes = b"jar") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_the_key_changes_with_the_jdk_the_jars_and_the_options(tmp_path):
    java = fake_java(tmp_path)
    a, b = jar(tmp_path, "a.jar"), jar(tmp_path, "b.jar")
    key = archive_key(java, [a, b], "-XX:-DontCompileHugeMethods")
    assert archive_key(java, [b, a], "-XX:-DontCompileHugeMethods") == key  # order is not identity
    assert archive_key(java, [a], "-XX:-DontCompileHugeMethods") != key
    assert archive_key(java, [a, b], "-Xmx40g") != key
    b.write_bytes(b"a rebuilt jar")  # the JVM refuses an archive whose jar changed size or time
    assert archive_key(java, [a, b], "-XX:-DontCompileHugeMethods") != key
    (tmp_path / "jdk" / "lib" / "modules").write_bytes(b"a JDK update")
    assert archive_key(java, [a], "-XX:-DontCompileHugeMethods") != archive_key(fake_java(tmp_path / "x"), [a],
                                                                               "-XX:-DontCompileHugeMethods")


def test_without_an_archive_the_jvm_writes_one_under_a_temporary_name(tmp_path):
    java = fake_java(tmp_path)
    first = plan(tmp_path / "cds", java, [jar(tmp_path, "a.jar")], "", pid=4242)
    assert first.training.parent == tmp_path / "cds" and first.training.name.startswith(f"{first.path.name}.")
    assert "-4242-" in first.training.name and first.training.name.endswith(".partial")
    assert plan(tmp_path / "cds", java, [tmp_path / "a.jar"], "", pid=4242).training != first.training  # per job
    assert first.java_options == (f"-XX:ArchiveClassesAtExit={first.training}", "-Xlog:cds*=off")
    first.path.write_bytes(b"archive")
    again = plan(tmp_path / "cds", java, [tmp_path / "a.jar"], "", pid=4243)
    assert again == ArchivePlan(first.path) and again.java_options == (f"-XX:SharedArchiveFile={first.path}",)


def test_no_java_no_room_or_an_unsayable_path_means_no_archive(tmp_path):
    assert plan(tmp_path / "cds", None, [], "") is None
    (tmp_path / "file").write_text("")
    java = fake_java(tmp_path)
    assert plan(tmp_path / "file" / "cds", java, [], "") is None
    assert plan(tmp_path / "my cache", java, [], "") is None  # Spark's launcher splits options at spaces
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if not os.access(locked, os.W_OK):  # root may write anywhere
        assert plan(locked, java, [], "") is None


def test_a_partial_archive_left_by_a_killed_job_is_removed(tmp_path):
    writing = jar(tmp_path, "k.jsa.41.partial")  # a JVM may be writing it right now
    left = jar(tmp_path, "k.jsa.42.partial")
    os.utime(left, (time.time() - 3600, time.time() - 3600))
    remove_stale(tmp_path)
    assert writing.exists() and not left.exists()


@pytest.mark.parametrize("jvm_exit, java_exit, promoted", [
    (0, 0, True), (143, 0, True),  # System.exit, SIGTERM: the JVM's own shutdown writes the file whole
    (0, 1, False), (None, 0, False), (-9, 0, False), (134, 0, False),  # unmappable, still running, killed, crashed
])
def test_only_a_whole_archive_a_jvm_maps_gets_its_final_name(tmp_path, jvm_exit, java_exit, promoted):
    java = fake_java(tmp_path, java_exit)
    archive = ArchivePlan(tmp_path / "k.jsa", tmp_path / "k.jsa.1.partial")
    archive.training.write_bytes(b"archive")
    assert promote(archive, java, jvm_exit) is promoted
    assert archive.path.exists() is promoted
    assert not archive.training.exists()  # promoted or removed, never left behind


def test_the_most_recently_used_archives_are_kept(tmp_path):
    now = time.time()
    for age in range(6):
        path = jar(tmp_path, f"{age}.jsa")
        os.utime(path, (now - age * 60, now - age * 60))
    prune(tmp_path, keep=4)
    assert sorted(p.name for p in tmp_path.glob("*.jsa")) == ["0.jsa", "1.jsa", "2.jsa", "3.jsa"]


def test_spark_submit_and_the_switch_mean_no_archive(tmp_path, monkeypatch):
    class Conf(dict):
        def contains(self, key):
            return key in self

        def get(self, key, default=None):
            return super().get(key, default)

    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.setattr(class_archive, "java_binary", lambda: fake_java(tmp_path))
    on = ConsumerSettings.from_env({"JVM_CLASS_ARCHIVE_DIR": str(tmp_path / "cds")})
    assert class_archive_plan(on, conf=Conf()).path.parent == tmp_path / "cds"
    assert class_archive_plan(on, conf=Conf({"spark.app.id": "app-1"})) is None  # spark-submit's JVM runs
    off = ConsumerSettings.from_env({"JVM_CLASS_ARCHIVE": "false", "JVM_CLASS_ARCHIVE_DIR": str(tmp_path)})
    assert class_archive_plan(off, conf=Conf()) is None


def test_a_jvm_that_did_not_map_its_archive_has_it_removed(tmp_path, monkeypatch, caplog):
    archive = ArchivePlan(jar(tmp_path, "k.jsa"))
    monkeypatch.setattr(class_archive, "mapped", lambda pid, path: False)
    class_archive.report(archive, 123)
    assert not archive.path.exists() and "did not map the class archive" in caplog.text


def test_a_symlinked_archive_directory_is_seen_as_mapped(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    archive = jar(real, "k.jsa")
    (tmp_path / "link").symlink_to(real)
    maps_file = tmp_path / "maps"
    maps_file.write_text(f"7f00-7f01 r--p 00000000 08:01 42 {archive.resolve()}\n")
    original = Path.read_text
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "read_text", lambda self, *a, **k: original(maps_file) if str(self).startswith("/proc/")
                      else original(self, *a, **k))
        assert class_archive.mapped(1, tmp_path / "link" / "k.jsa") is True


def test_a_sigterm_stops_the_queries_before_the_jvm_goes_then_exits_143(tmp_path, monkeypatch, caplog):
    """The order matters: a listener event or a ``foreachBatch`` call reaching a gateway that is
    shutting down prints py4j stack traces; and a job that cannot stop its queries still lets the
    JVM write the archive."""
    import signal

    calls = []
    monkeypatch.setattr(class_archive, "finish", lambda archive, timeout: calls.append(("finish", timeout)))
    archive = ArchivePlan(tmp_path / "k.jsa", training=tmp_path / "k.jsa.partial")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        for failing in (False, True):
            def stop_job(budget, failing=failing):
                calls.append(("stop", budget))
                if failing:
                    raise RuntimeError("py4j: connection refused")

            calls.clear()
            class_archive.finish_on_sigterm(archive, stop_job)
            handler = signal.getsignal(signal.SIGTERM)
            with pytest.raises(SystemExit) as ended:
                handler(signal.SIGTERM, None)
            assert ended.value.code == 143
            assert calls == [("stop", class_archive.STOP_BUDGET_SECONDS),
                             ("finish", class_archive.SIGTERM_BUDGET_SECONDS)]
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a second SIGTERM ends it at once
        assert "did not stop cleanly" in caplog.text and "connection refused" in caplog.text
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_what_the_environment_puts_on_the_class_path_keys_the_archive_or_rules_it_out(tmp_path, monkeypatch, caplog):
    """Spark's launcher adds SPARK_CONF_DIR (or $SPARK_HOME/conf) and the Hadoop/YARN directories
    to the JVM's class path. Java 17 writes no archive with a non-empty directory there, and a
    run without it cannot map one written with it: such a run has no archive, and the others
    keep one of their own."""
    from stockpulse.stream.class_archive import launcher_class_path, unarchivable

    empty, filled = tmp_path / "empty", tmp_path / "conf"
    empty.mkdir()
    filled.mkdir()
    (filled / "spark-defaults.conf").write_text("spark.ui.enabled false\n")
    env = {"SPARK_HOME": str(tmp_path / "spark"), "HADOOP_CONF_DIR": str(empty),
           "SPARK_DIST_CLASSPATH": f"{tmp_path / 'a.jar'}{os.pathsep}{tmp_path / 'b.jar'}"}
    assert launcher_class_path(env) == [("SPARK_CONF_DIR", tmp_path / "spark" / "conf"), ("HADOOP_CONF_DIR", empty),
                                        ("SPARK_DIST_CLASSPATH", tmp_path / "a.jar"),
                                        ("SPARK_DIST_CLASSPATH", tmp_path / "b.jar")]
    assert unarchivable(launcher_class_path(env)) is None  # empty or absent: the JVM archives
    assert unarchivable(launcher_class_path({**env, "SPARK_CONF_DIR": str(filled)})) == ("SPARK_CONF_DIR", filled)

    class Conf(dict):
        def contains(self, key):
            return key in self

    for name in ("SPARK_HOME", "SPARK_CONF_DIR", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_CLASSPATH",
                 "SPARK_DIST_CLASSPATH", "PYSPARK_GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)
    java = fake_java(tmp_path)
    monkeypatch.setattr(class_archive, "java_binary", lambda: java)
    settings = ConsumerSettings.from_env({"JVM_CLASS_ARCHIVE_DIR": str(tmp_path / "cds")})
    plain = class_archive_plan(settings, conf=Conf())
    monkeypatch.setenv("HADOOP_CONF_DIR", str(empty))
    with_hadoop = class_archive_plan(settings, conf=Conf())
    assert with_hadoop.path != plain.path  # an archive of its own
    monkeypatch.setenv("SPARK_HOME", str(tmp_path / "nowhere"))  # no conf directory there: the same JVM
    assert class_archive_plan(settings, conf=Conf()).path == with_hadoop.path
    monkeypatch.setenv("SPARK_CONF_DIR", str(filled))
    assert class_archive_plan(settings, conf=Conf()) is None
    assert f"SPARK_CONF_DIR puts the directory {filled}, which is not empty" in caplog.text


def test_the_jvm_starts_with_sigterm_ignored_so_a_group_sigterm_reaches_only_the_driver(monkeypatch):
    """pyspark's own preexec (SIGINT ignored) still runs; SIGTERM is ignored as well, in the child only."""
    import signal
    import subprocess

    from pyspark import java_gateway

    monkeypatch.setattr(java_gateway, "Popen", java_gateway.Popen)  # restored after the test
    class_archive.keep_sigterm_from_jvm()
    class_archive.keep_sigterm_from_jvm()  # once is enough: not wrapped twice
    assert java_gateway.Popen.keeps_sigterm and java_gateway.Popen.__name__ == "launch"
    child = java_gateway.Popen(["sh", "-c", "grep SigIgn /proc/self/status"], stdout=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    ignored = int(child.communicate(timeout=30)[0].split()[1], 16)
    assert ignored & (1 << (signal.SIGTERM - 1)) and ignored & (1 << (signal.SIGINT - 1))
    assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN  # this process still hears it


def test_a_jvm_still_writing_past_the_budget_is_stopped_and_its_file_removed(tmp_path, monkeypatch, caplog):
    """Never a JVM left behind to write a file nobody checks once the job is gone."""
    import signal
    import subprocess

    jvm = subprocess.Popen(["sleep", "600"], stdin=subprocess.PIPE)
    partial = jar(tmp_path, "k.jsa.1.partial", b"half")

    class Gateway:
        class _gateway_client:
            is_connected = True

    monkeypatch.setattr(class_archive, "_gateway", lambda: (Gateway(), jvm))
    monkeypatch.setattr(class_archive, "java_binary", lambda: fake_java(tmp_path))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        class_archive.finish(ArchivePlan(tmp_path / "k.jsa", partial), timeout=0.5)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if jvm.poll() is None:
            jvm.kill()
    assert jvm.poll() is not None and not partial.exists() and not (tmp_path / "k.jsa").exists()
    assert "still writing its class archive" in caplog.text
