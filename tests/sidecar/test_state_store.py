"""Persisted state: round trip, restart of a loop from it, and every way the file can be bad."""

from __future__ import annotations

import hashlib
import pickle
import threading
from pathlib import Path

import pytest

from autoscaler.decision import DecisionState, Recommendation, ScaleEvent
from autoscaler.objective import ObjectiveState
from sidecar.state_store import MAGIC, PersistedState, PersistedWorkload, StateStore, restore, snapshot
from tests.fakes import FlatFit
from tests.sidecar.test_control_loop import Harness, query

KEY = ("ml", "llama")
STATE = PersistedState(
    saved_at=1000.0,
    workloads={
        KEY: PersistedWorkload(
            model_name="flat",
            fitted=FlatFit(80.0),
            fitted_at=900.0,
            decision_state=DecisionState(
                recommendations=(Recommendation(990.0, 4),),
                scale_events=(ScaleEvent(980.0, 2),),
                last_replicas=4,
            ),
        )
    },
    cold_start_samples_seconds={KEY: (95.0, 110.0, 130.5)},
)


def test_round_trip(tmp_path: Path):
    store = StateStore(tmp_path / "state" / "sidecar.state")
    assert store.save(STATE) == []
    loaded = store.load()
    assert loaded.problem is None and loaded.state == STATE


def test_missing_file_is_a_first_start_not_a_problem(tmp_path: Path):
    assert StateStore(tmp_path / "nothing").load().state is None
    assert StateStore(tmp_path / "nothing").load().problem is None


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        pytest.param(lambda raw: raw[: len(raw) // 2], "checksum mismatch", id="truncated mid-payload"),
        pytest.param(lambda raw: raw[:20], "format line differs", id="truncated in the header"),
        pytest.param(lambda raw: b"", "format line differs", id="empty file"),
        pytest.param(lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "checksum mismatch", id="one bit flipped"),
        pytest.param(lambda raw: b"{}\n", "format line differs", id="some other file"),
    ],
)
def test_damaged_file_is_detected_not_loaded(tmp_path: Path, damage, problem):
    store = StateStore(tmp_path / "sidecar.state")
    store.save(STATE)
    store.path.write_bytes(damage(store.path.read_bytes()))
    loaded = store.load()
    assert loaded.state is None and loaded.problem is not None and problem in loaded.problem


def test_a_checksummed_file_of_another_shape_is_reported_not_raised(tmp_path: Path):
    payload = pickle.dumps({"saved_at": 1.0, "workloads": [], "cold_start_samples_seconds": {}})
    path = tmp_path / "sidecar.state"
    path.write_bytes(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    loaded = StateStore(path).load()
    assert (
        loaded.state is None
        and loaded.problem == "unreadable state: TypeError: workloads is a list, not a mapping"
    )


def test_unpicklable_model_is_saved_without_the_model(tmp_path: Path):
    store = StateStore(tmp_path / "sidecar.state")
    lock_model = PersistedWorkload("flat", threading.Lock(), 900.0, DecisionState(last_replicas=3))
    skipped = store.save(PersistedState(1000.0, {KEY: lock_model}))
    assert skipped == ["ml/llama"]
    loaded = store.load().state
    assert loaded is not None
    assert loaded.workloads[KEY].fitted is None and loaded.workloads[KEY].decision_state.last_replicas == 3


async def test_a_restarted_loop_resumes_without_refitting(tmp_path: Path):
    store = StateStore(tmp_path / "sidecar.state")
    first = Harness(names=("llama",))
    first.signals.history_values = {query("llama"): lambda t: 80.0}
    first.signals.values = {query("llama"): lambda t: 10.0}
    await first.loop.tick()
    await first.loop.settle()
    first.clock.advance(15)
    await first.loop.tick()
    store.save(snapshot(first.loop, first.clock.now()))
    first.executor.shutdown()

    second = Harness(names=("llama",), clock=first.clock)
    second.signals.history_values = first.signals.history_values
    second.signals.values = first.signals.values
    loaded = store.load()
    assert loaded.state is not None
    assert restore(second.loop, loaded.state) == [KEY]
    await second.loop.tick()
    second.executor.shutdown()
    assert second.forecaster.fits == 0, "the saved model is used; no refit inside the interval"
    item = second.latest.get(*KEY)
    assert item is not None and item.forecast is not None and item.decision.replicas == 8


def test_a_decision_state_saved_before_the_objective_resumes_with_its_windows() -> None:
    # What unpickling a state saved by the version before the objective gives: a DecisionState
    # whose newer slot was never set.
    old = DecisionState(recommendations=(Recommendation(990.0, 4),), last_replicas=4)
    object.__delattr__(old, "objective")
    harness = Harness(names=("llama",))
    saved = PersistedWorkload("flat", None, None, old)
    assert restore(harness.loop, PersistedState(1000.0, {KEY: saved})) == [KEY]
    resumed = harness.loop.statuses()[KEY].decision_state
    assert resumed == DecisionState(recommendations=(Recommendation(990.0, 4),), last_replicas=4)
    harness.executor.shutdown()


def test_an_objective_state_saved_before_its_ttft_totals_resumes_with_its_level() -> None:
    # Unpickling sets a slotted dataclass's fields by position: an objective state saved before
    # the TTFT totals were appended comes back with those two slots unset.
    saved_objective = ObjectiveState(level=-1.5, demand=900.0, unserved=0.3, seconds=60.0, last_at=990.0)
    fields_then = [getattr(saved_objective, name) for name in OBJECTIVE_FIELDS_BEFORE_TTFT]
    old_objective = object.__new__(ObjectiveState)
    old_objective.__setstate__(fields_then)
    assert not hasattr(old_objective, "timed")
    old = DecisionState(last_replicas=4, objective=old_objective)
    harness = Harness(names=("llama",))
    assert restore(
        harness.loop, PersistedState(1000.0, {KEY: PersistedWorkload("flat", None, None, old)})
    ) == [KEY]
    resumed = harness.loop.statuses()[KEY].decision_state
    assert resumed == DecisionState(last_replicas=4, objective=saved_objective)
    harness.executor.shutdown()


OBJECTIVE_FIELDS_BEFORE_TTFT = ("level", "demand", "unserved", "seconds", "last_at", "ready", "loads")
