"""kubernetes_client against the contract server in kubernetes_contract.py (real HTTP through
kubernetes-asyncio; see that module for which endpoints it models and what it leaves out)."""

from __future__ import annotations

import asyncio

import pytest

from sidecar import kubernetes_client
from sidecar.control_loop import ReplicaCount
from sidecar.kubernetes_client import (
    OWNER_MIN_ANNOTATION,
    ColdStartTracker,
    KubernetesReader,
    LeaseElector,
    Prewarmer,
    PrewarmTarget,
    watch_cold_starts,
)
from tests.conftest import eventually
from tests.fakes import FakeClock
from tests.sidecar.kubernetes_contract import pod_event


@pytest.mark.parametrize(
    ("kind", "replicas", "ready", "expected"),
    [
        pytest.param("Deployment", 4, 3, ReplicaCount(4, 3), id="deployment"),
        pytest.param("Deployment", 2, None, ReplicaCount(2, 0), id="readyReplicas omitted means 0"),
        pytest.param("StatefulSet", 5, 5, ReplicaCount(5, 5), id="statefulset"),
    ],
)
async def test_read_replicas(cluster, kind, replicas, ready, expected):
    contract, api = cluster
    contract.add_deployment("ml", "llama", replicas, ready, {"app": "llama"})
    if kind == "StatefulSet":
        contract.objects[("statefulsets", "ml", "llama")] = contract.objects.pop(
            ("deployments", "ml", "llama")
        )
    assert await KubernetesReader(api).read_replicas("ml", kind, "llama") == expected


async def test_missing_target_and_api_outage_are_none(cluster):
    contract, api = cluster
    reader = KubernetesReader(api)
    assert await reader.read_replicas("ml", "Deployment", "ghost") is None
    contract.add_deployment("ml", "llama", 4, 4, {"app": "llama"})
    contract.down = True
    assert await reader.read_replicas("ml", "Deployment", "llama") is None


async def test_pod_selector_comes_from_match_labels(cluster):
    contract, api = cluster
    contract.add_deployment("ml", "llama", 4, 4, {"app": "llama", "tier": "gpu"})
    assert await KubernetesReader(api).pod_selector("ml", "Deployment", "llama") == "app=llama,tier=gpu"


async def test_pod_watch_learns_cold_starts(cluster):
    contract, api = cluster
    tracker = ColdStartTracker(estimate=max)
    stop = asyncio.Event()
    task = asyncio.create_task(watch_cold_starts(api, ("ml", "llama"), "app=llama", tracker, stop))
    events = [
        pod_event("ADDED", "a", "2026-01-01T00:00:00Z", None),
        pod_event("MODIFIED", "a", "2026-01-01T00:00:00Z", "2026-01-01T00:01:35Z"),  # 95 s
        pod_event("MODIFIED", "a", "2026-01-01T00:00:00Z", "2026-01-01T00:01:35Z"),  # same pod again
        pod_event("ADDED", "b", "2026-01-01T00:10:00Z", "2026-01-01T00:12:10Z"),  # 130 s
        pod_event("MODIFIED", "c", "2026-01-01T00:20:00Z", "2026-01-01T00:45:00Z", restarts=2),  # restarted
        pod_event("DELETED", "d", "2026-01-01T00:30:00Z", "2026-01-01T00:31:00Z"),
    ]
    for event in events:
        await contract.pod_events.put(event)
    await eventually(
        lambda: len(tracker.pairs.get(("ml", "llama"), ())) == 2 and contract.pod_events.empty(),
        what="both Ready pods tracked",
    )
    stop.set()
    await contract.pod_events.put(None)
    await asyncio.wait_for(task, 5)
    assert contract.watch_selectors[0] == "app=llama"
    assert tracker.samples_seconds() == {("ml", "llama"): (95.0, 130.0)}
    # The estimator sees the pairs themselves; `max` of (created, ready) pairs picks the latest.
    assert tracker.cold_start_seconds("ml", "llama") is not None
    assert tracker.cold_start_seconds("ml", "other") is None


async def test_dropped_connections_are_failures_not_crashes(cluster):
    contract, api = cluster
    contract.add_deployment("ml", "llama", 4, 4, {"app": "llama"})
    elector = LeaseElector(api, FakeClock(), "ml", "autoscaler", "a", duration_seconds=15)
    contract.dropping = True
    assert await KubernetesReader(api).read_replicas("ml", "Deployment", "llama") is None
    assert await elector.try_acquire() is False
    contract.dropping = False
    assert await elector.try_acquire() is True


async def test_an_api_server_that_never_answers_times_out(cluster, monkeypatch):
    contract, api = cluster
    monkeypatch.setattr(kubernetes_client, "REQUEST_TIMEOUT_SECONDS", 0.2)
    contract.add_deployment("ml", "llama", 4, 4, {"app": "llama"})
    contract.silent = True
    reader = KubernetesReader(api)
    elector = LeaseElector(api, FakeClock(), "ml", "autoscaler", "a", duration_seconds=15)
    assert await asyncio.wait_for(reader.read_replicas("ml", "Deployment", "llama"), 5) is None
    assert await asyncio.wait_for(elector.try_acquire(), 5) is False


async def test_the_lease_never_claims_less_than_the_holder_counts_on(cluster):
    contract, api = cluster
    assert await LeaseElector(api, FakeClock(), "ml", "autoscaler", "a", duration_seconds=15.5).try_acquire()
    lease = contract.objects[("leases", "ml", "autoscaler")]
    assert lease["spec"]["leaseDurationSeconds"] == 16


async def test_two_instances_elect_one_leader(cluster):
    _, api = cluster
    clock = FakeClock()
    a = LeaseElector(api, clock, "ml", "autoscaler", "a", duration_seconds=15)
    b = LeaseElector(api, clock, "ml", "autoscaler", "b", duration_seconds=15)

    assert await a.try_acquire() is True, "no lease yet: a creates it"
    assert await b.try_acquire() is False, "a's lease is fresh"
    clock.advance(5)
    assert await a.try_acquire() is True, "a renews"
    clock.advance(14)
    assert await b.try_acquire() is False, "renewed 14 s ago: still a's"
    assert a.is_leader

    clock.advance(2)  # a stopped renewing 16 s ago
    assert not a.is_leader, "a no longer claims leadership once its renewal is older than the duration"
    assert await b.try_acquire() is True, "b takes the expired lease"
    assert await a.try_acquire() is False, "a sees b's fresh renewal"


async def test_racing_for_an_expired_lease_elects_exactly_one(cluster):
    contract, api = cluster
    clock = FakeClock()
    old = LeaseElector(api, clock, "ml", "autoscaler", "old", duration_seconds=15)
    await old.try_acquire()
    clock.advance(60)
    racers = [LeaseElector(api, clock, "ml", "autoscaler", name, duration_seconds=15) for name in "abc"]
    results = await asyncio.gather(*(r.try_acquire() for r in racers))
    assert sorted(results) == [False, False, True]
    holder = contract.objects[("leases", "ml", "autoscaler")]["spec"]["holderIdentity"]
    assert holder == racers[results.index(True)].identity
    assert contract.objects[("leases", "ml", "autoscaler")]["spec"]["leaseTransitions"] == 1


async def test_release_hands_over_at_once(cluster):
    _, api = cluster
    clock = FakeClock()
    a = LeaseElector(api, clock, "ml", "autoscaler", "a", duration_seconds=15)
    b = LeaseElector(api, clock, "ml", "autoscaler", "b", duration_seconds=15)
    await a.try_acquire()
    await a.release()
    assert not a.is_leader
    assert await b.try_acquire() is True


@pytest.mark.parametrize(
    ("kind", "path_part", "field", "patch_type"),
    [
        pytest.param(
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "minReplicas",
            "application/strategic-merge-patch+json",
            id="HPA minReplicas",
        ),
        pytest.param(
            "ScaledObject",
            "scaledobjects",
            "minReplicaCount",
            "application/merge-patch+json",
            id="KEDA minReplicaCount (a CRD: no strategic merge)",
        ),
    ],
)
async def test_prewarm_raises_and_restores_the_floor(cluster, kind, path_part, field, patch_type):
    contract, api = cluster
    contract.add_hpa("ml", "llama", 2)
    contract.add_scaled_object("ml", "llama", 2)
    clock = FakeClock()
    elector = LeaseElector(api, clock, "ml", "autoscaler", "a", duration_seconds=15)
    await elector.try_acquire()
    prewarmer = Prewarmer(api, elector)
    target = PrewarmTarget("ml", kind, "llama")

    def floor() -> int:
        return contract.objects[(path_part, "ml", "llama")]["spec"][field]

    assert await prewarmer.apply(target, 6) == 6 and floor() == 6
    patches = [r for r in contract.requests if r[0] == "PATCH"]
    assert len(patches) == 1 and patches[0][2] == patch_type
    assert await prewarmer.apply(target, 6) is None, "unchanged floor: no write"
    assert await prewarmer.apply(target, 1) == 2 and floor() == 2, "never below the owner's own minimum"
    assert await prewarmer.apply(target, 4) == 4 and floor() == 4
    assert await prewarmer.apply(target, None) == 2 and floor() == 2, "restored"
    assert prewarmer.original == {} and prewarmer.applied == {}
    assert await prewarmer.apply(target, 1) is None, "a wish at or below the owner's minimum writes nothing"


@pytest.mark.parametrize(
    ("kind", "path_part", "field"),
    [
        pytest.param("HorizontalPodAutoscaler", "horizontalpodautoscalers", "minReplicas", id="HPA"),
        pytest.param("ScaledObject", "scaledobjects", "minReplicaCount", id="ScaledObject"),
    ],
)
async def test_a_new_leader_restores_the_owners_floor_an_old_one_raised(cluster, kind, path_part, field):
    contract, api = cluster
    contract.add_hpa("ml", "llama", 2)
    contract.add_scaled_object("ml", "llama", 2)
    stored = contract.objects[(path_part, "ml", "llama")]
    clock = FakeClock()
    first = LeaseElector(api, clock, "ml", "autoscaler", "a", duration_seconds=15)
    await first.try_acquire()
    target = PrewarmTarget("ml", kind, "llama")
    assert await Prewarmer(api, first).apply(target, 6) == 6
    assert stored["metadata"]["annotations"] == {OWNER_MIN_ANNOTATION: "2"}
    # The first leader dies with the floor raised; the next one starts with an empty memory.
    clock.advance(16)
    second = LeaseElector(api, clock, "ml", "autoscaler", "b", duration_seconds=15)
    assert await second.try_acquire()
    successor = Prewarmer(api, second)
    assert await successor.apply(target, 6) is None, "the raised floor is already what it wants"
    assert await successor.apply(target, None) == 2 and stored["spec"][field] == 2, "the owner's, not 6"
    assert OWNER_MIN_ANNOTATION not in stored["metadata"].get("annotations", {})


async def test_a_replica_that_lost_the_lease_forgets_the_floor_it_wrote(cluster):
    contract, api = cluster
    contract.add_hpa("ml", "llama", 2)
    stored = contract.objects[("horizontalpodautoscalers", "ml", "llama")]
    clock = FakeClock()
    a = LeaseElector(api, clock, "ml", "autoscaler", "a", duration_seconds=15)
    b = LeaseElector(api, clock, "ml", "autoscaler", "b", duration_seconds=15)
    await a.try_acquire()
    target = PrewarmTarget("ml", "HorizontalPodAutoscaler", "llama")
    prewarmer_a = Prewarmer(api, a)
    assert await prewarmer_a.apply(target, 6) == 6
    await a.release()
    assert await prewarmer_a.apply(target, 6) is None, "a follower writes nothing"
    await b.try_acquire()
    assert await Prewarmer(api, b).apply(target, None) == 2
    await b.release()
    await a.try_acquire()
    # `a` remembered 6 as applied; had it kept that, asking for 6 again would write nothing.
    assert await prewarmer_a.apply(target, 6) == 6 and stored["spec"]["minReplicas"] == 6


async def test_only_the_leader_prewarms(cluster):
    contract, api = cluster
    contract.add_hpa("ml", "llama", 2)
    clock = FakeClock()
    leader = LeaseElector(api, clock, "ml", "autoscaler", "a", duration_seconds=15)
    follower = LeaseElector(api, clock, "ml", "autoscaler", "b", duration_seconds=15)
    await leader.try_acquire()
    await follower.try_acquire()
    target = PrewarmTarget("ml", "HorizontalPodAutoscaler", "llama")
    assert await Prewarmer(api, follower).apply(target, 6) is None
    assert contract.objects[("horizontalpodautoscalers", "ml", "llama")]["spec"]["minReplicas"] == 2
    assert not [r for r in contract.requests if r[0] == "PATCH"]


async def test_run_keeps_renewing_and_releases_on_stop(cluster):
    _, api = cluster
    clock = FakeClock()
    a = LeaseElector(api, clock, "ml", "autoscaler", "a", duration_seconds=15)
    b = LeaseElector(api, clock, "ml", "autoscaler", "b", duration_seconds=15)
    stop = asyncio.Event()
    running = asyncio.create_task(a.run(stop))
    while clock.now() < FakeClock().now() + 60:  # four durations of fake time
        await asyncio.sleep(0.01)
    assert a.is_leader and await b.try_acquire() is False, "renewed every 5 s, so never expired"
    stop.set()
    await asyncio.wait_for(running, 5)
    assert await b.try_acquire() is True, "released on stop: b needs no expiry wait"


async def test_a_silent_api_server_costs_the_replica_read_not_the_tick(cluster):
    """Finding 6: the replica read waited 10 s, exactly the default workload timeout, so the two
    raced and no decision was made. The read now has a budget below the tick's (sidecar.budgets):
    the tick decides without a count (which holds) and publishes."""
    from sidecar.control_loop import ControlLoop, LoopPorts
    from sidecar.latest_decisions import LatestDecisions
    from sidecar.settings import LoopSettings, QuerySettings, WorkloadSettings
    from tests.fakes import FlatForecaster, ScriptedSignals, proportional_decide

    contract, api = cluster
    contract.add_deployment("ml", "llama", 4, 4, {"app": "llama"})
    contract.silent = True
    load = 'load{workload="llama"}'
    latest = LatestDecisions()
    loop = ControlLoop(
        workloads=[
            WorkloadSettings(
                name="llama", namespace="ml", queries=QuerySettings(load=load), replica_capacity_rps=10
            )
        ],
        settings=LoopSettings(workload_timeout_seconds=2),
        ports=LoopPorts(
            signals=ScriptedSignals(values={load: lambda t: 30.0}),
            decide=proportional_decide,
            models={"recent_quantiles": FlatForecaster},
            latest=latest,
            clock=FakeClock(),
            replicas=KubernetesReader(api),
        ),
    )
    report = await loop.tick()
    assert report.failed == {} and report.published == 1
    published = latest.get("ml", "llama")
    assert published is not None and published.observations.current_replicas is None


async def test_failed_kubernetes_calls_are_counted_by_reason(cluster, monkeypatch):
    from prometheus_client import CollectorRegistry

    from sidecar.telemetry import build_call_metrics

    contract, api = cluster
    monkeypatch.setattr(kubernetes_client, "REQUEST_TIMEOUT_SECONDS", 0.2)
    registry = CollectorRegistry()
    reader = KubernetesReader(api, build_call_metrics(registry))
    assert await reader.read_replicas("ml", "Deployment", "absent") is None
    contract.silent = True
    assert await reader.read_replicas("ml", "Deployment", "llama") is None

    def errors(reason: str) -> float | None:
        labels = {"call": "read_deployment", "reason": reason}
        return registry.get_sample_value("autoscaler_kubernetes_request_errors_total", labels)

    assert (errors("404"), errors("timeout")) == (1.0, 1.0)
    count = registry.get_sample_value(
        "autoscaler_kubernetes_request_duration_seconds_count", {"call": "read_deployment"}
    )
    assert count == 2.0


async def test_lease_pod_watch_and_prewarm_calls_are_counted_too(cluster):
    """Every call the sidecar makes goes through telemetry.kubernetes_call: the Lease, the pod
    watch and the pre-warm read and patch show on the same two instruments as the replica read,
    successes timed, failures counted by reason (the watch counted, not timed)."""
    from prometheus_client import CollectorRegistry

    from sidecar.telemetry import build_call_metrics

    contract, api = cluster
    registry = CollectorRegistry()
    metrics = build_call_metrics(registry)
    contract.add_hpa("ml", "llama", 2)
    elector = LeaseElector(api, FakeClock(), "ml", "autoscaler", "a", duration_seconds=15, metrics=metrics)
    assert await elector.try_acquire()  # read 404, then create
    assert await elector.try_acquire()  # read, then replace
    prewarmer = Prewarmer(api, elector, metrics)
    assert await prewarmer.apply(PrewarmTarget("ml", "HorizontalPodAutoscaler", "llama"), 6) == 6
    missing = PrewarmTarget("ml", "ScaledObject", "ghost")
    assert await prewarmer.apply(missing, 6) is None
    contract.down = True
    stop = asyncio.Event()
    watch = asyncio.create_task(
        watch_cold_starts(
            api,
            ("ml", "llama"),
            "app=llama",
            ColdStartTracker(estimate=max),
            stop,
            retry_seconds=60,
            metrics=metrics,
        )
    )

    def errors(call: str, reason: str) -> float | None:
        labels = {"call": call, "reason": reason}
        return registry.get_sample_value("autoscaler_kubernetes_request_errors_total", labels)

    def timed(call: str) -> float | None:
        return registry.get_sample_value(
            "autoscaler_kubernetes_request_duration_seconds_count", {"call": call}
        )

    await eventually(lambda: errors("watch_pods", "503") == 1.0, what="the failed watch counted")
    stop.set()
    await asyncio.wait_for(watch, 5)
    assert errors("read_lease", "404") == 1.0
    assert errors("read_scaledobject", "404") == 1.0
    assert {
        call: timed(call)
        for call in (
            "read_lease",
            "create_lease",
            "replace_lease",
            "read_horizontalpodautoscaler",
            "patch_horizontalpodautoscaler",
            "read_scaledobject",
            "watch_pods",
        )
    } == {
        "read_lease": 2.0,
        "create_lease": 1.0,
        "replace_lease": 1.0,
        "read_horizontalpodautoscaler": 1.0,
        "patch_horizontalpodautoscaler": 1.0,
        "read_scaledobject": 1.0,
        "watch_pods": None,
    }


def test_the_cold_start_tracker_remembers_a_bounded_number_of_pods():
    """Found in review: the set of seen pod UIDs grew with every pod the cluster ever started."""
    tracker = ColdStartTracker(estimate=max, remember_pods=100)
    for index in range(1000):
        assert tracker.record(("ml", "llama"), f"pod-{index}", 0.0, 10.0)
    assert len(tracker._seen) == 100
    assert not tracker.record(("ml", "llama"), "pod-999", 0.0, 10.0), "a recent pod is not counted twice"
    assert len(tracker.pairs[("ml", "llama")]) == tracker.keep
