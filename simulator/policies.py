"""The replay's planned policies, computed over the whole trace at once: static-peak and oracle.
(The predictive policy is the shipped control loop: sidecar/replay_simulation.py.)
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from simulator.replay import Occupancy, ReplaySettings

DAY_SECONDS = 86_400


class StaticPeak:
    """A fixed fleet sized for the trace's peak: never violates, never scales, costs the most."""

    name = "static-peak"

    def plan(self, demand_rps: np.ndarray, settings: ReplaySettings) -> Occupancy:
        peak = float(np.nanmax(demand_rps)) if np.any(~np.isnan(demand_rps)) else 0.0
        replicas = np.full(len(demand_rps), settings.replicas_for(np.array([peak]))[0], dtype=np.int64)
        return Occupancy(self.name, replicas, replicas.copy())


class Oracle:
    """Knows future demand and the cold start: the cheapest fleet with zero violation.

    need(t) = ceil(demand(t) / target per replica). A pod serving at u was created by u - C (C =
    cold start) and, since removed pods never come back, existed throughout [u - C, u]. So at any t
    at least need(u) pods exist for every u in [t, t + C]: provisioned(t) >= max need over
    [t, t + C], and the oracle provisions exactly that bound, second by second, so no policy with
    zero violation can cost less. It is feasible: removing the newest pod first, the pods alive
    throughout [t - C, t] number min provisioned over that span >= need(t) (every s in it has
    t in [s, s + C]), and all of them are ready at t. Example, C = 2, need 1,1,1,3,1: provisioned
    1,3,3,3,1 (scale-up exactly one cold start early), ready 1,1,1,3,1. The trace's first C seconds
    start from pods assumed ready, as every policy's initial pods are.

    Its pods all take the run's median cold start: the other policies' pods draw theirs
    (simulator/pods.py), so the oracle is the reference a fleet of median pods could reach, not
    a bound on each draw.
    """

    name = "oracle"

    def plan(self, demand_rps: np.ndarray, settings: ReplaySettings) -> Occupancy:
        need = settings.replicas_for(demand_rps)
        span = settings.cold_start_seconds + 1
        # With this origin the filters see the trailing window [i - C, i]; the forward window
        # [i, i + C] is the trailing one on the reversed series. Edges repeat the nearest value.
        trailing = (span - 1) - span // 2
        provisioned = maximum_filter1d(need[::-1], size=span, origin=trailing, mode="nearest")[::-1]
        ready = minimum_filter1d(provisioned, size=span, origin=trailing, mode="nearest")
        return Occupancy(self.name, ready, provisioned)
