"""Direct pre-warm in a cluster: the scale target's floor (HPA minReplicas or KEDA's
minReplicaCount) raised to the forecast's count ahead of load and handed back after it; which
count the floor takes is the core's rule (`autoscaler.prewarm.prewarm_floor`)."""

from __future__ import annotations

from autoscaler.prewarm import prewarm_floor
from sidecar.control_loop import ControlLoop
from sidecar.kubernetes_client import LeaseElector, Prewarmer, PrewarmTarget


async def apply_prewarm(prewarmer: Prewarmer, loop: ControlLoop) -> None:
    """Raise the floor to the forecast's count while the forecast is what drives the decision
    (load has not arrived yet); hand it back to the owner otherwise."""
    configured: set[PrewarmTarget] = set()
    for status in loop.statuses().values():
        workload, published = status.settings, status.published
        if workload.prewarm is None:
            continue
        target = PrewarmTarget(workload.namespace, workload.prewarm.kind, workload.prewarm.name)
        configured.add(target)
        if published is None:
            continue
        await prewarmer.apply(target, prewarm_floor(published.decision))
    # A reload that dropped a workload or its prewarm section hands that target's floor back.
    for target in [t for t in prewarmer.original if t not in configured]:
        await prewarmer.apply(target, None)


async def _restore_prewarm(prewarmer: Prewarmer) -> None:
    for target in list(prewarmer.original):
        await prewarmer.apply(target, None)


async def hand_back(prewarmer: Prewarmer | None, elector: LeaseElector | None) -> None:
    """At drain, after the loop's last tick: put the owners' floors back while we still hold the
    Lease, then release it. In the other order the restore is skipped (only the leader writes)
    and the raised minReplicas outlives this sidecar."""
    if prewarmer is not None:
        await _restore_prewarm(prewarmer)
    if elector is not None:
        await elector.release()
