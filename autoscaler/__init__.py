"""Scaling decisions: pure functions of (now, observations, forecast, policy, state)."""

from autoscaler.cold_start import estimate_cold_start
from autoscaler.cost import DEFAULT_GPUS_PER_REPLICA, Cost, CostBasis, cost_now, per_1k_requests
from autoscaler.decide import decide
from autoscaler.decision import Decision, DecisionState, Reason
from autoscaler.observations import Observations, Reading, Signal
from autoscaler.policy import (
    PolicyError,
    RatePolicy,
    RatePolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)

__all__ = [
    "DEFAULT_GPUS_PER_REPLICA",
    "Cost",
    "CostBasis",
    "Decision",
    "DecisionState",
    "Observations",
    "PolicyError",
    "RatePolicy",
    "RatePolicyType",
    "Reading",
    "Reason",
    "ScalingPolicy",
    "ScalingRules",
    "SelectPolicy",
    "Signal",
    "cost_now",
    "decide",
    "estimate_cold_start",
    "per_1k_requests",
]
