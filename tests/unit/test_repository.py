"""Editing copies of the committed config.pbtxt."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkout.repository import (
    SOURCE,
    copy_model_definition,
    get_parameter,
    parse_config,
    set_batcher,
    set_instance_count,
    set_parameter,
    set_queue_policy,
)


def test_set_parameter_changes_exactly_one_value() -> None:
    config = (SOURCE / "config.pbtxt").read_text()
    updated = set_parameter(config, "engine", "openvino-int8")
    assert 'string_value: "openvino-int8"' in updated
    assert updated.count("string_value") == config.count("string_value")
    assert get_parameter(updated, "engine") == "openvino-int8"
    assert get_parameter(set_parameter(config, "token_budget", "64"), "token_budget") == "64"
    with pytest.raises(ValueError, match="no parameter named 'nope'"):
        set_parameter(config, "nope", "x")
    with pytest.raises(ValueError, match="no parameter named 'nope'"):
        get_parameter(config, "nope")


def test_set_instance_count() -> None:
    config = (SOURCE / "config.pbtxt").read_text()
    updated = parse_config(set_instance_count(config, 2))
    assert updated.instance_group[0].count == 2
    assert parse_config(config).instance_group[0].count == 1
    # everything else survives the round trip
    original = parse_config(config)
    updated.instance_group[0].count = 1
    assert updated == original


def test_set_batcher() -> None:
    config = (SOURCE / "config.pbtxt").read_text()
    preferred = parse_config(set_batcher(config, 500, every_size_preferred=True))
    assert preferred.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(preferred.dynamic_batching.preferred_batch_size) == list(
        range(1, preferred.max_batch_size + 1)
    )
    batching = parse_config(set_batcher(config, 0, every_size_preferred=False)).dynamic_batching
    assert batching.max_queue_delay_microseconds == 0
    assert not batching.preferred_batch_size


def test_set_queue_policy_rejects_past_size_and_time() -> None:
    config = (SOURCE / "config.pbtxt").read_text()
    batching = parse_config(set_queue_policy(config, 8, 2.5)).dynamic_batching
    policy = batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds) == (8, 2_500_000)
    assert policy.timeout_action == policy.REJECT and policy.allow_timeout_override
    assert batching.max_queue_delay_microseconds == 0  # the rest as committed
    for size, seconds in ((0, 1.0), (8, 0.0)):
        with pytest.raises(ValueError, match="queue policy needs"):
            set_queue_policy(config, size, seconds)


def test_copy_has_code_and_config_but_no_checkpoint(tmp_path: Path) -> None:
    model = copy_model_definition(tmp_path, "custom") / "distilbert_sst2"
    assert (model / "config.pbtxt").read_text() == "custom"
    assert (model / "1" / "model.py").is_file()
    assert not (model / "1" / "checkpoint").exists()
