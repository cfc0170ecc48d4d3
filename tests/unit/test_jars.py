"""The pinned JVM dependencies and their cache (no network: resolution itself is exercised by every
integration test that starts the broker or the job)."""

from __future__ import annotations

import pytest

from stockpulse import jars


@pytest.mark.parametrize("jar, name", [
    ("kafka-clients-3.9.2.jar", "kafka-clients"),
    ("spark-sql-kafka-0-10_2.13-4.2.0.jar", "spark-sql-kafka-0-10_2.13"),
    ("zstd-jni-1.5.6-10.jar", "zstd-jni"),
    ("scala-library-2.13.16.jar", "scala-library"),
])
def test_a_jar_name_without_its_version(jar, name):
    assert jars.artifact_name(jar) == name


def test_the_connector_matches_the_installed_pyspark():
    import pyspark

    assert jars.spark_kafka_package() == f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark.__version__}"


def test_the_broker_is_apache_kafka_4():
    assert jars.pinned_version(jars.KAFKA_BROKER, "kafka_2.13").startswith("4.")


def test_a_resolution_that_did_not_complete_is_not_trusted(tmp_path):
    directory = jars.bundle_dir(jars.KAFKA_BROKER, tmp_path)
    directory.mkdir(parents=True)
    (directory / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    assert jars.cached_jars(jars.KAFKA_BROKER, tmp_path) is None
    (directory / ".complete").write_text("done\n")
    assert [p.name for p in jars.cached_jars(jars.KAFKA_BROKER, tmp_path)] == ["kafka_2.13-4.1.1.jar"]


def test_the_cache_follows_its_setting(tmp_path):
    assert jars.cache_root({"STOCKPULSE_JAR_CACHE": str(tmp_path)}) == tmp_path
    assert jars.cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "stockpulse" / "jars"


def test_maven_failure_is_reduced_to_its_cause():
    output = ("[ERROR] Failed to execute goal ...: Could not find artifact x:y:jar:9 in central\n"
              "[ERROR] \n[ERROR] To see the full stack trace of the errors, re-run Maven with -e\n")
    assert jars._maven_error(output).startswith("Failed to execute goal")


def test_a_cached_build_runs_once_and_lands_whole(tmp_path):
    target = tmp_path / "bundle"
    builds = []

    def build(staging):
        builds.append(staging)
        (staging / "a.jar").write_bytes(b"jar")

    jars.build_cached(target, lambda: (target / "a.jar").is_file(), build, "bundle", 5)
    jars.build_cached(target, lambda: (target / "a.jar").is_file(), build, "bundle", 5)
    assert len(builds) == 1 and (target / "a.jar").read_bytes() == b"jar"
    assert not builds[0].exists()  # renamed into place, not copied


def test_a_refused_build_leaves_nothing_behind(tmp_path):
    target = tmp_path / "bundle"

    def build(staging):
        (staging / "half.jar").write_bytes(b"")
        raise jars.ServiceError("cannot resolve bundle: no network")

    with pytest.raises(jars.ServiceError, match="no network"):
        jars.build_cached(target, lambda: False, build, "bundle", 5)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".bundle.lock"]
