"""clear_outputs' targets: local directories only; a remote lake is refused with a clear line."""

from pathlib import Path

import pytest

from stockpulse.config import ConsumerSettings, LakehouseSettings
from stockpulse.errors import ConfigError
from stockpulse.ops.outputs import targets


def test_targets_are_the_lake_both_checkpoints_and_the_layers_built_from_the_lake(tmp_path):
    env = {"LAKE_PATH": str(tmp_path / "lake"), "CHECKPOINT_DIR": str(tmp_path / "chk"),
           "LAKE_COMPACTED_PATH": str(tmp_path / "compacted"), "ANALYTICS_DUCKDB": str(tmp_path / "a.duckdb")}
    assert targets(ConsumerSettings.from_env(env), LakehouseSettings.from_env(env)) == [
        tmp_path / "lake", tmp_path / "chk" / "parquet", tmp_path / "chk" / "postgres",
        tmp_path / "compacted", tmp_path / "a.duckdb"]


def test_a_remote_lake_is_refused():
    settings = ConsumerSettings.from_env({"LAKE_PATH": "s3a://bucket/lake", "CHECKPOINT_DIR": "/tmp/chk"})
    with pytest.raises(ConfigError, match="s3a://bucket/lake is not on this machine"):
        targets(settings)
    assert isinstance(targets(ConsumerSettings.from_env({}))[0], Path)
