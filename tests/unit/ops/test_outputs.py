"""clear_outputs' targets: local directories only; a remote lake is refused with a clear line."""

from pathlib import Path

import pytest

from stockpulse.config import ConsumerSettings
from stockpulse.errors import ConfigError
from stockpulse.ops.outputs import targets


def test_targets_are_the_lake_and_both_checkpoints(tmp_path):
    settings = ConsumerSettings.from_env({"LAKE_PATH": str(tmp_path / "lake"), "CHECKPOINT_DIR": str(tmp_path / "chk")})
    assert targets(settings) == [tmp_path / "lake", tmp_path / "chk" / "parquet", tmp_path / "chk" / "postgres"]


def test_a_remote_lake_is_refused():
    settings = ConsumerSettings.from_env({"LAKE_PATH": "s3a://bucket/lake", "CHECKPOINT_DIR": "/tmp/chk"})
    with pytest.raises(ConfigError, match="s3a://bucket/lake is not on this machine"):
        targets(settings)
    assert isinstance(targets(ConsumerSettings.from_env({}))[0], Path)
