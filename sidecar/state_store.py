"""Persisted state: fitted models, decision state and cold-start samples survive a restart.

The state is one file on a volume, written atomically (temporary file, fsync, rename) so a
crash mid-write leaves the previous file. It starts with a format line and the SHA-256 of the
payload: a truncated or corrupt file is detected, reported and ignored, and the loop rebuilds
from Prometheus history as on a first start. It never crashes the sidecar.

The payload is pickle, because fitted statsmodels and LightGBM objects have no other complete
serialization. Pickle runs code on load, so the file must live on a volume only this sidecar
writes; the checksum catches corruption, not tampering (whoever can write that volume can
already replace the container). Each workload is pickled separately, so one model that cannot
be pickled (or unpickled after an upgrade) costs only that workload's model.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from autoscaler.decision import DecisionState
from autoscaler.objective import ObjectiveState
from sidecar.clock import Clock, sleep_unless_stopped
from sidecar.control_loop import ColdStartSource, ControlLoop

log = logging.getLogger(__name__)

MAGIC = b"predictive-autoscaler-state v1\n"


@dataclass(frozen=True, slots=True)
class PersistedWorkload:
    """What one workload needs to resume: its fitted model (with the model's name and the Unix
    time it was fitted) and its decision state (stabilization windows, scale events)."""

    model_name: str
    fitted: Any | None
    fitted_at: float | None
    decision_state: DecisionState


@dataclass(frozen=True, slots=True)
class PersistedState:
    saved_at: float
    workloads: dict[tuple[str, str], PersistedWorkload] = field(default_factory=dict)
    cold_start_samples_seconds: dict[tuple[str, str], tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadedState:
    """`state` is None when there was nothing usable; `problem` says why when it was not simply
    absent (e.g. "checksum mismatch: truncated or corrupt")."""

    state: PersistedState | None
    problem: str | None = None
    skipped: tuple[str, ...] = ()


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, state: PersistedState) -> list[str]:
        """Write atomically; returns the workloads whose model could not be pickled (saved
        without it)."""
        unpicklable: list[str] = []
        workloads: dict[tuple[str, str], bytes] = {}
        for key, workload in state.workloads.items():
            try:
                workloads[key] = pickle.dumps(workload, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # pickle raises many types for exotic objects
                unpicklable.append(f"{key[0]}/{key[1]}")
                without_model = PersistedWorkload(workload.model_name, None, None, workload.decision_state)
                workloads[key] = pickle.dumps(without_model, protocol=pickle.HIGHEST_PROTOCOL)
        payload = pickle.dumps(
            {
                "saved_at": state.saved_at,
                "workloads": workloads,
                "cold_start_samples_seconds": state.cold_start_samples_seconds,
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        digest = hashlib.sha256(payload).hexdigest().encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(MAGIC + digest + b"\n" + payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return unpicklable

    def load(self) -> LoadedState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return LoadedState(None)
        except OSError as error:
            return LoadedState(None, f"cannot read {self.path}: {error}")
        if not raw.startswith(MAGIC):
            return LoadedState(None, "not a state file of this version (format line differs)")
        header, _, payload = raw[len(MAGIC) :].partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode() != header:
            return LoadedState(None, "checksum mismatch: truncated or corrupt")
        try:
            document = pickle.loads(payload)
            saved_at = float(document["saved_at"])
            packed: dict[tuple[str, str], bytes] = document["workloads"]
            if not isinstance(packed, dict):
                raise TypeError(f"workloads is a {type(packed).__name__}, not a mapping")
            samples = {
                tuple(k): tuple(map(float, v)) for k, v in document["cold_start_samples_seconds"].items()
            }
        except Exception as error:  # a checksummed file that still fails means a version skew
            return LoadedState(None, f"unreadable state: {type(error).__name__}: {error}")
        workloads: dict[tuple[str, str], PersistedWorkload] = {}
        skipped: list[str] = []
        for key, blob in packed.items():
            try:
                workload = pickle.loads(blob)
            except Exception:  # e.g. a model class renamed by an upgrade: refit that one
                skipped.append(f"{key[0]}/{key[1]}")
                continue
            if isinstance(workload, PersistedWorkload):
                workloads[key] = workload
        return LoadedState(PersistedState(saved_at, workloads, samples), skipped=tuple(skipped))


def snapshot(
    loop: ControlLoop, now: float, cold_start_samples: dict[tuple[str, str], tuple[float, ...]] | None = None
) -> PersistedState:
    return PersistedState(
        saved_at=now,
        workloads={
            key: PersistedWorkload(
                model_name=runtime.settings.forecast.model,
                fitted=runtime.fitted,
                fitted_at=runtime.fitted_at,
                decision_state=runtime.decision_state,
            )
            for key, runtime in loop.statuses().items()
        },
        cold_start_samples_seconds=dict(cold_start_samples or {}),
    )


def restore(loop: ControlLoop, state: PersistedState) -> list[tuple[str, str]]:
    """Give each configured workload its saved model (when the configured model is the same)
    and decision state; returns the workloads restored. History is not saved: it is re-read
    from Prometheus on the first tick, which also fills the time the sidecar was down."""
    restored = []
    for key, status in loop.statuses().items():
        saved = state.workloads.get(key)
        if saved is None:
            continue
        same_model = saved.model_name == status.settings.forecast.model
        fitted, fitted_at = (saved.fitted, saved.fitted_at) if same_model else (None, None)
        loop.restore(key, _complete(saved.decision_state), fitted, fitted_at)
        restored.append(key)
    return restored


def _complete(state: DecisionState) -> DecisionState:
    """A decision state an older version saved lacks the fields added since (the objective, and
    the objective's own later fields): they take their defaults and the rest is kept, where a
    missing one would fail every tick."""
    kept = _present(state, DecisionState)
    if "objective" in kept:
        kept["objective"] = ObjectiveState(**_present(kept["objective"], ObjectiveState))
    return DecisionState(**kept)


def _present(saved: Any, kind: type) -> dict[str, Any]:
    return {f.name: getattr(saved, f.name) for f in fields(kind) if hasattr(saved, f.name)}


# --- What the service does with the store ---------------------------------------------------


class ColdStartSamples(ColdStartSource, Protocol):
    """The cold-start source whose samples are saved with the state (the pod-watch tracker)."""

    def samples_seconds(self) -> dict[tuple[str, str], tuple[float, ...]]: ...

    def restore(self, samples: dict[tuple[str, str], tuple[float, ...]]) -> None: ...


def restore_state(store: StateStore, loop: ControlLoop, tracker: ColdStartSamples) -> None:
    loaded = store.load()
    if loaded.problem is not None:
        log.warning("state file ignored; rebuilding from history", extra={"problem": loaded.problem})
    if loaded.state is None:
        return
    restored = restore(loop, loaded.state)
    tracker.restore(loaded.state.cold_start_samples_seconds)
    log.info("state restored", extra={"workloads": len(restored), "skipped": list(loaded.skipped)})


async def save_periodically(
    store: StateStore,
    loop: ControlLoop,
    tracker: ColdStartSamples,
    clock: Clock,
    interval: float,
    stop: asyncio.Event,
) -> None:
    while not await sleep_unless_stopped(clock, interval, stop):
        try:
            await asyncio.to_thread(store.save, snapshot(loop, clock.now(), tracker.samples_seconds()))
        except OSError as error:
            log.warning("cannot save state", extra={"error": str(error)})


def save_at_shutdown(store: StateStore, loop: ControlLoop, tracker: ColdStartSamples, now: float) -> None:
    try:
        store.save(snapshot(loop, now, tracker.samples_seconds()))
        log.info("state saved", extra={"path": str(store.path)})
    except OSError as error:
        log.error("cannot save state at shutdown", extra={"error": str(error)})
