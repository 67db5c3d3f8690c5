"""The consumers between the predictive policy and the pods: deploy/examples/hpa/hpa.yaml and
deploy/examples/keda/scaledobject.yaml as code, what the HPA's tolerance does to a published count,
and KEDA's own 0 <-> 1 (activation, cooldown, push, fallback)."""

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from autoscaler.policy import RatePolicy, RatePolicyType, ScalingRules, SelectPolicy
from simulator.consumer import (
    ConsumerHpa,
    ConsumerKeda,
    Fallback,
    describe_chain,
    example_hpa_spec,
    example_scaled_object,
)
from simulator.hpa import ExternalTarget, HpaBehavior, Scale, TargetType

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "hpa" / "hpa.yaml"


def rules(section: dict) -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=section["stabilizationWindowSeconds"],
        select_policy=SelectPolicy(section["selectPolicy"]),
        policies=tuple(
            RatePolicy(RatePolicyType(p["type"]), p["value"], p["periodSeconds"]) for p in section["policies"]
        ),
    )


def test_the_simulated_consumer_is_the_example_hpa():
    manifest = yaml.safe_load(EXAMPLE.read_text())["spec"]
    (metric,) = manifest["metrics"]
    spec = example_hpa_spec(manifest["minReplicas"], manifest["maxReplicas"])
    assert metric["external"]["metric"]["name"] == "desired_replicas"
    target = metric["external"]["target"]
    assert spec.metrics == (ExternalTarget(TargetType(target["type"]), float(target["averageValue"])),)
    behavior = manifest["behavior"]
    assert spec.behavior == HpaBehavior(
        scale_up=rules(behavior["scaleUp"]), scale_down=rules(behavior["scaleDown"])
    )
    assert "tolerance 0.1" in describe_chain(spec.tolerance)


@pytest.mark.parametrize(
    ("tolerance", "published", "expected"),
    [
        pytest.param(0.1, 32.0, 30, id="tolerance 0.1 holds +2 at 30 pods"),
        pytest.param(0.1, 27.0, 30, id="tolerance 0.1 holds -3 at 30 pods"),
        pytest.param(0.1, 34.0, 34, id="tolerance 0.1 passes +4 at 30 pods"),
        pytest.param(0.0, 31.0, 31, id="tolerance 0 passes +1"),
        pytest.param(0.0, 12.0, 12, id="tolerance 0 lands a drop at once"),
    ],
)
def test_the_consumer_adopts_the_published_count_outside_its_tolerance(tolerance, published, expected):
    consumer = ConsumerHpa(example_hpa_spec(1, 100, tolerance))
    assert consumer.sync(0.0, published, Scale(30, 30, 30)) == expected


def test_no_value_holds_the_count():
    consumer = ConsumerHpa(example_hpa_spec(1, 100, 0.0))
    assert consumer.sync(0.0, None, Scale(30, 30, 25)) == 30


KEDA_EXAMPLE = EXAMPLE.parents[1] / "keda" / "scaledobject.yaml"


def keda_rules(section: dict) -> ScalingRules:
    return rules({"selectPolicy": "Max", **section})  # KEDA's HPA defaults selectPolicy to Max


def test_the_simulated_keda_is_the_example_scaled_object():
    manifest = yaml.safe_load(KEDA_EXAMPLE.read_text())["spec"]
    spec = example_scaled_object(manifest["minReplicaCount"], manifest["maxReplicaCount"])
    assert spec.polling_interval_seconds == manifest["pollingInterval"]
    assert spec.cooldown_period_seconds == manifest["cooldownPeriod"]
    fallback = manifest["fallback"]
    assert spec.fallback == Fallback(fallback["failureThreshold"], fallback["replicas"])
    behavior = manifest["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert spec.hpa.behavior == HpaBehavior(
        scale_up=keda_rules(behavior["scaleUp"]), scale_down=keda_rules(behavior["scaleDown"])
    )
    # KEDA, not its HPA, owns zero; the triggers return desired_replicas against targetSize 1.
    assert (spec.min_replica_count, spec.hpa.min_replicas) == (0, 1)
    assert spec.hpa.max_replicas == manifest["maxReplicaCount"]
    types = {trigger["type"] for trigger in manifest["triggers"]}
    assert spec.push == ("external-push" in types)
    assert {trigger["metricType"] for trigger in manifest["triggers"]} == {"AverageValue"}
    assert spec.hpa.metrics == (ExternalTarget(TargetType.AVERAGE_VALUE, 1.0),)
    chain = describe_chain(0.1, "keda", 0)
    assert "minReplicaCount 0" in chain and "cooldownPeriod 300 s" in chain


def keda(min_replicas: int = 0) -> ConsumerKeda:
    return ConsumerKeda(example_scaled_object(min_replicas, 100, 0.0))


def test_keda_activates_from_zero_and_then_its_hpa_follows():
    consumer = keda()
    assert consumer.sync(0.0, True, 1.0, Scale(0, 0, 0)) == 1
    assert consumer.sync(15.0, True, 6.0, Scale(1, 1, 0)) == 6


def test_an_inactive_target_goes_to_zero_only_after_the_cooldown():
    consumer = keda()
    consumer.sync(0.0, True, 1.0, Scale(1, 1, 1))
    # Inactive from t=15: the HPA holds its minimum of 1 until 300 s after the last activity.
    assert [consumer.sync(t, False, 0.0, Scale(1, 1, 1)) for t in (15.0, 300.0)] == [1, 1]
    assert consumer.sync(315.0, False, 0.0, Scale(1, 1, 1)) == 0
    assert consumer.sync(330.0, False, 0.0, Scale(0, 0, 0)) == 0


def test_a_push_activates_between_polls():
    consumer = keda()
    consumer.sync(0.0, False, 0.0, Scale(0, 0, 0))  # polled: stays at zero, next poll at 15
    assert consumer.sync(5.0, True, 1.0, Scale(0, 0, 0)) == 1


def test_without_push_activity_waits_for_the_poll():
    consumer = ConsumerKeda(replace(example_scaled_object(0, 100), push=False))
    consumer.sync(0.0, False, 0.0, Scale(0, 0, 0))
    assert consumer.sync(5.0, True, 1.0, Scale(0, 0, 0)) == 0
    assert consumer.sync(15.0, True, 1.0, Scale(0, 0, 0)) == 1


def test_errors_never_scale_to_zero_and_reach_the_fallback_after_the_threshold():
    consumer = keda()
    # Never active, long past any cooldown: a failed call still holds the count.
    assert [consumer.sync(t, None, None, Scale(3, 3, 3)) for t in (1000.0, 1015.0)] == [3, 3]
    # The third failure in a row: the HPA is given fallback.replicas (4).
    assert consumer.sync(1030.0, None, None, Scale(3, 3, 3)) == 4


def test_a_target_at_zero_waits_out_errors_until_the_fallback():
    consumer = keda()
    assert [consumer.sync(t, None, None, Scale(0, 0, 0)) for t in (0.0, 15.0)] == [0, 0]
    assert consumer.sync(30.0, None, None, Scale(0, 0, 0)) == 4


def test_a_min_replica_count_above_zero_never_goes_to_zero():
    consumer = keda(min_replicas=2)
    assert consumer.sync(1000.0, False, 0.0, Scale(2, 2, 2)) == 2
