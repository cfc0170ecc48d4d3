"""The embedded SeaweedFS for LAKE_STORE=s3: its command line, its key pair, and the mode's settings."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from stockpulse.config import LakeStoreSettings, StackSettings
from stockpulse.errors import ConfigError, ServiceError
from stockpulse.ops.services.seaweedfs import (
    GRPC_OFFSET, SeaweedFS, all_ports, client_env, identity_config, keys_of, new_keys, server_ports, weed_command,
)


def test_every_port_is_ours_and_every_listener_is_on_loopback(tmp_path):
    command = weed_command("weed", tmp_path / "data", 30000, tmp_path / "ids.json", "stockpulse")
    flags = dict(arg.lstrip("-").split("=", 1) for arg in command[2:])
    assert flags["ip"] == flags["ip.bind"] == "127.0.0.1"
    assert {int(v) for k, v in flags.items() if k.endswith((".port", ".port.grpc"))} == set(all_ports(30000))
    assert flags["s3.port"] == "30000" and flags["s3.port.grpc"] == str(30000 + GRPC_OFFSET)
    # servers that would open more ports are off, and nothing phones home
    assert (flags["s3.port.iceberg"], flags["s3.port.lance"], flags["webdav"]) == ("0", "0", "false")
    assert flags["master.telemetry"] == "false"
    assert (flags["bucket"], flags["s3.config"], flags["dir"]) == ("stockpulse", str(tmp_path / "ids.json"),
                                                                  str(tmp_path / "data"))


def test_ports_are_the_base_and_the_next_four_and_each_plus_ten_thousand():
    assert server_ports(8333) == {"s3": 8333, "filer": 8334, "master": 8335, "volume": 8336, "admin": 8337}
    assert sorted(all_ports(8333)) == [8333, 8334, 8335, 8336, 8337, 18333, 18334, 18335, 18336, 18337]


def test_identity_file_round_trips_its_keys_and_grants_no_anonymous_access():
    config = identity_config("AK", "SK")
    assert keys_of(json.loads(json.dumps(config))) == ("AK", "SK")
    assert all(identity.get("credentials") for identity in config["identities"])
    with pytest.raises(ValueError):
        keys_of({"identities": [{"name": "anonymous", "actions": ["Read"]}]})


def test_new_keys_are_random():
    first, second = new_keys(), new_keys()
    assert first != second and len(first[0]) == 20 and len(first[1]) == 40


def store(tmp_path) -> SeaweedFS:
    return SeaweedFS(tmp_path / "seaweedfs", 30000, tmp_path / "secrets" / "seaweedfs-s3.json",
                     tmp_path / "logs" / "seaweedfs.log", tmp_path / "run" / "seaweedfs.pid")


def test_the_key_pair_is_made_once_private_and_then_kept(tmp_path):
    s = store(tmp_path)
    assert s.keys() is None  # reading never creates
    keys = s.keys(create=True)
    assert s.keys() == keys == s.keys(create=True)
    assert stat.S_IMODE(s.identities.stat().st_mode) == 0o600
    assert stat.S_IMODE(s.identities.parent.stat().st_mode) == 0o700
    assert s.client_env() == client_env("http://127.0.0.1:30000", *keys)


def test_a_broken_identity_file_says_how_to_recover(tmp_path):
    s = store(tmp_path)
    s.identities.parent.mkdir()
    s.identities.write_text("{}")
    with pytest.raises(ServiceError, match="delete it"):
        s.keys()


def test_a_stopped_store_stops_nothing(tmp_path):
    s = store(tmp_path)
    assert not s.is_running() and s.stop() is False


# -- LAKE_STORE ------------------------------------------------------------------------------------
def test_local_is_the_default_and_s3_runs_seaweedfs():
    assert LakeStoreSettings.from_env({}) == LakeStoreSettings("local", 8333, False)
    assert LakeStoreSettings.from_env({"LAKE_STORE": "S3", "SEAWEEDFS_PORT": "9000"}) == \
        LakeStoreSettings("s3", 9000, True)


def test_a_users_own_s3a_lake_starts_nothing_but_the_embedded_stores_own_path_does():
    assert not LakeStoreSettings.from_env({"LAKE_STORE": "s3", "LAKE_PATH": "s3a://mine/lake"}).embedded
    assert LakeStoreSettings.from_env({"LAKE_STORE": "s3", "LAKE_PATH": "s3a://stockpulse/lake/parquet"}).embedded


@pytest.mark.parametrize("env", [{"LAKE_STORE": "minio"}, {"SEAWEEDFS_PORT": "60000"}, {"SEAWEEDFS_PORT": "x"}])
def test_bad_settings_are_config_errors(env):
    with pytest.raises(ConfigError):
        LakeStoreSettings.from_env(env)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("LAKE_PATH", "LAKE_COMPACTED_PATH", "CHECKPOINT_DIR", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "LAKE_STORE", "SEAWEEDFS_PORT", "LAKE_PARTITION_BY"):
        monkeypatch.setenv(name, "")  # recorded, so what with_lake_store writes is undone after the test
        monkeypatch.delenv(name)
    monkeypatch.setenv("STOCKPULSE_STATE_DIR", str(tmp_path / "state"))
    return monkeypatch


def test_make_up_under_s3_points_everything_it_starts_at_the_store(clean_env):
    import os

    from stockpulse.ops.stack import with_lake_store

    clean_env.setenv("LAKE_STORE", "s3")
    s = with_lake_store(StackSettings.from_env(), keys=True)
    assert s.consumer.lake_path == os.environ["LAKE_PATH"] == "s3a://stockpulse/lake/parquet"
    assert os.environ["LAKE_COMPACTED_PATH"] == "s3a://stockpulse/lake/compacted"
    assert s.consumer.checkpoint_dir.endswith("chk/s3")  # local, and not the local lake's checkpoints
    assert s.consumer.partition_by == ("index",)  # a few objects per batch, not one per row
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333" and os.environ["AWS_ACCESS_KEY_ID"]
    again = with_lake_store(StackSettings.from_env(), keys=True)  # the exported path still means "ours"
    assert again.consumer == s.consumer and LakeStoreSettings.from_env().embedded


def test_make_up_keeps_a_users_checkpoint_dir_and_changes_nothing_when_local(clean_env, tmp_path):
    import os

    from stockpulse.ops.stack import with_lake_store

    before = StackSettings.from_env()
    assert with_lake_store(before, keys=True) is before and "AWS_ENDPOINT_URL" not in os.environ
    clean_env.setenv("LAKE_STORE", "s3")
    clean_env.setenv("CHECKPOINT_DIR", str(tmp_path / "mine"))
    assert with_lake_store(StackSettings.from_env()).consumer.checkpoint_dir == str(tmp_path / "mine")
    assert "AWS_ACCESS_KEY_ID" not in os.environ  # keys only for `up`


def test_stale_sockets_of_our_ports_go_and_nothing_else(tmp_path):
    import socket

    from stockpulse.ops.services.seaweedfs import remove_stale_sockets

    def bound(name: str):
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(tmp_path / name))
        sock.close()
        return tmp_path / name

    ours = [bound("seaweedfs-s3-30000.sock"), bound(f"seaweedfs-master-grpc-{30002 + GRPC_OFFSET}.sock")]
    theirs = bound("seaweedfs-s3-8333.sock")
    plain = tmp_path / "seaweedfs-filer-30001.sock"
    plain.write_text("not a socket")
    assert sorted(remove_stale_sockets(30000, tmp_path)) == sorted(ours)
    assert theirs.exists() and plain.exists() and not any(p.exists() for p in ours)


def test_stack_env_exports_what_up_gives_its_jobs_and_hand_runs_without_it_are_refused(clean_env):
    from stockpulse.config import LakehouseSettings
    from stockpulse.errors import ConfigError
    from stockpulse.ops.stack import env_lines

    clean_env.setenv("LAKE_STORE", "s3")
    with pytest.raises(ConfigError, match="stockpulse.ops.stack env"):
        LakehouseSettings.from_env()  # LAKE_STORE=s3 alone would compact the local lake/
    lines = env_lines(StackSettings.from_env())
    assert "export LAKE_PATH=s3a://stockpulse/lake/parquet" in lines
    assert any(line.startswith("export AWS_SECRET_ACCESS_KEY=") for line in lines)
    assert LakehouseSettings.from_env().raw_path == "s3a://stockpulse/lake/parquet"


def test_a_disk_near_seaweedfs_read_only_floor_is_named():
    """Stop 22's CI ran with 1.9 GiB free of 252 GiB: under the 1% floor, every S3 write failed
    and the S3 tests waited out their timeouts instead of saying why."""
    from stockpulse.ops.services.seaweedfs import low_disk_warning

    gib = 1024**3
    assert low_disk_warning(70 * gib, 252 * gib, Path("/data")) is None
    below = low_disk_warning(int(1.9 * gib), 252 * gib, Path("/data"))
    assert below.startswith("only 1.9 GiB free on the disk of /data, below the 1% (2.5 GiB)")
    assert "close to the 1%" in low_disk_warning(4 * gib, 252 * gib, Path("/data"))
