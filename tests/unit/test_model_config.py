"""The committed config.pbtxt keeps what the measurements chose."""

from __future__ import annotations

from checkout.repository import SOURCE, parse_config


def test_dynamic_batcher_keeps_payload_prefetching() -> None:
    """tritonserver 2.51 turns prefetching off for any queue policy, and its
    batcher then misses wake-ups and sleeps its 500 ms default wait under load
    (model README, "The dynamic batcher's 500 ms wait")."""
    batching = parse_config((SOURCE / "config.pbtxt").read_text()).dynamic_batching
    policy = batching.default_queue_policy
    assert policy.max_queue_size == 0
    assert policy.default_timeout_microseconds == 0
    assert not policy.allow_timeout_override
    assert batching.priority_levels == 0
    assert not batching.priority_queue_policy


def test_dynamic_batcher_dispatches_at_once() -> None:
    """No delay, so a lone request does not wait for company; and no preferred
    sizes, which with no delay would close a batch at the first one instead of
    letting it grow while the instance computes (model README, "The dynamic
    batcher: no wait when idle")."""
    batching = parse_config((SOURCE / "config.pbtxt").read_text()).dynamic_batching
    assert batching.max_queue_delay_microseconds == 0
    assert not batching.preferred_batch_size
