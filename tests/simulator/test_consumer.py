"""The HPA between the predictive policy and the pods: deploy/examples/hpa/hpa.yaml as code, and
what its tolerance does to a published count."""

from pathlib import Path

import pytest
import yaml

from autoscaler.policy import RatePolicy, RatePolicyType, ScalingRules, SelectPolicy
from simulator.consumer import ConsumerHpa, describe_chain, example_hpa_spec
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
