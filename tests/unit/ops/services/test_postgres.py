"""The apt route must install PostgreSQL binaries without Debian starting its own server on 5432."""

from stockpulse.ops.services.postgres import skip_main_cluster


def test_writes_create_main_cluster_false(tmp_path):
    conf = tmp_path / "createcluster.d" / "50-stockpulse.conf"
    skip_main_cluster(conf)
    assert "create_main_cluster = false" in conf.read_text().splitlines()


def test_keeps_a_file_that_is_already_there(tmp_path):
    conf = tmp_path / "50-stockpulse.conf"
    conf.write_text("create_main_cluster = true\n")
    skip_main_cluster(conf)
    assert conf.read_text() == "create_main_cluster = true\n"


def test_an_unwritable_place_is_a_warning_not_a_crash(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    skip_main_cluster(blocker / "sub" / "50-stockpulse.conf")
    assert "could not write" in caplog.text
