"""Config fields that only change speed: validation and the hash."""

import dataclasses

import pytest

from evaluator.config import ConfigError, load_config


def test_speed_only_fields_leave_hash():
    config = load_config("test-tiny")
    faster = dataclasses.replace(config, batch_size=32, chunk_size=64, lpips_cache_mib=0.0)
    assert faster.hash == config.hash
    assert dataclasses.replace(config, eval_size=128).hash != config.hash


def test_lpips_cache_default_and_json():
    config = load_config("reflade-v1")
    assert config.lpips_cache_mib == 1.0
    obj = config.to_json()
    obj["lpips_cache_mib"] = 8
    assert load_config(obj).lpips_cache_mib == 8


@pytest.mark.parametrize("value", [-1, "2", True, float("inf"), None])
def test_lpips_cache_rejects(value):
    obj = load_config("test-tiny").to_json()
    obj["lpips_cache_mib"] = value
    with pytest.raises(ConfigError) as error:
        load_config(obj)
    assert str(error.value) == (
        f"lpips_cache_mib must be a number of MiB >= 0 (0 turns the LPIPS feature cache off), found {value!r}"
    )
