"""Liveness and readiness judged from the loop's own records."""

from __future__ import annotations

import pytest

from sidecar.readiness import check_live, check_ready
from tests.sidecar.test_control_loop import START, Harness, query


@pytest.fixture
async def harness():
    h = Harness(names=("llama",))
    yield h
    h.executor.shutdown()


async def test_not_ready_before_the_first_decision(harness):
    health = check_ready(harness.loop, harness.clock.now())
    assert not health.ok and health.problems == ("ml/llama: no decision yet",)


async def test_ready_with_fresh_load_then_not_once_it_is_stale(harness):
    harness.signals.values = {query("llama"): lambda t: 42.0}
    await harness.loop.tick()
    assert check_ready(harness.loop, harness.clock.now()).ok
    harness.signals.values = {}
    harness.clock.advance(61)  # stale_after_seconds is 60 in the harness workloads
    await harness.loop.tick()
    health = check_ready(harness.loop, harness.clock.now())
    assert health.problems == ("ml/llama: load signal is 61 s old (stale after 60 s), holding",)
    assert health.response().status == 503


async def test_failing_ticks_are_reported(harness):
    def broken(t: float) -> float:
        raise RuntimeError("boom")

    harness.signals.values = {query("llama"): broken}
    await harness.loop.tick()
    assert "ml/llama: 1 failed ticks, last: RuntimeError: boom" in check_ready(harness.loop, START).problems


@pytest.mark.parametrize(
    ("last_tick", "now", "ok"),
    [
        pytest.param(None, START + 30, True, id="starting up, within three ticks"),
        pytest.param(None, START + 46, False, id="never ticked after three ticks"),
        pytest.param(START + 100, START + 140, True, id="ticking"),
        pytest.param(START + 100, START + 146, False, id="wedged loop"),
    ],
)
def test_liveness(harness, last_tick, now, ok):
    assert check_live(harness.loop, now, last_tick, started_at=START).ok is ok


async def test_one_broken_workload_is_reported_without_taking_the_others_out_of_service():
    h = Harness(names=("llama", "mistral"))
    try:
        h.signals.values = {query("llama"): lambda t: 42.0}  # mistral's query returns nothing
        await h.loop.tick()
        health = check_ready(h.loop, h.clock.now())
        assert health.ok
        assert health.problems == ("ml/mistral: no load reading yet",)
        h.signals.values = {}
        h.clock.advance(61)
        await h.loop.tick()
        health = check_ready(h.loop, h.clock.now())
        assert not health.ok, "no workload left with a fresh signal"
        assert len(health.problems) == 2
    finally:
        h.executor.shutdown()
