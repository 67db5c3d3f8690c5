"""Settings: YAML plus environment, errors that name field, value and range, reload rejection."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from autoscaler.policy import SelectPolicy
from sidecar.settings import SettingsError, SettingsFile, load_settings, parse_settings
from tests.sidecar.hostile_settings import alias_bomb, oversize

GOOD = textwrap.dedent(
    """
    loop:
      tick_seconds: 5
    prometheus:
      url: http://prometheus:9090
    workloads:
      - name: llama
        namespace: ml
        queries:
          load: sum(rate(requests_total{namespace="$namespace"}[1m]))
        replica_capacity_rps: 10
        min_replicas: 2
        max_replicas: 20
        behavior:
          scale_down:
            stabilization_window_seconds: 600
            select_policy: Min
            policies: [{type: Pods, value: 1, period_seconds: 60}]
    """
)


def test_good_file_becomes_validated_policies(tmp_path: Path):
    path = tmp_path / "settings.yaml"
    path.write_text(GOOD)
    settings = load_settings(path)
    workload = settings.workloads[0]
    policy = workload.to_policy()
    assert settings.loop.tick_seconds == 5
    assert (policy.min_replicas, policy.max_replicas, policy.replica_capacity_rps) == (2, 20, 10)
    assert policy.scale_down.stabilization_window_seconds == 600
    assert policy.scale_down.select_policy is SelectPolicy.MIN
    # The direction left out keeps the HPA default: 0 s window, 4 pods or 100 % per 15 s.
    assert policy.scale_up.stabilization_window_seconds == 0
    assert workload.target_name == "llama"


def test_environment_overrides_the_file(monkeypatch):
    monkeypatch.setenv("PREDICTIVE_AUTOSCALER_LOOP__TICK_SECONDS", "1")
    monkeypatch.setenv("PREDICTIVE_AUTOSCALER_LOG_FORMAT", "json")
    settings = parse_settings(GOOD)
    assert settings.loop.tick_seconds == 1
    assert settings.log_format == "json"


def test_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("PREDICTIVE_AUTOSCALER_LOOP__TICK_SECONDS", "0.2")
    with pytest.raises(SettingsError, match=r"loop\.tick_seconds.*0\.2.*greater than or equal to 1"):
        parse_settings(GOOD)


def test_environment_override_that_is_not_json_is_named(monkeypatch):
    monkeypatch.setenv("PREDICTIVE_AUTOSCALER_LOOP", "{tick_seconds: 5")
    with pytest.raises(SettingsError, match=r"invalid environment override: .*\"loop\""):
        parse_settings(GOOD)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "replica_capacity_rps: 10",
            "replica_capacity_rps: -3",
            r"workloads\[ml/llama\]\.replica_capacity_rps=-3: Input should be greater than 0",
            id="negative capacity names the workload, value and range",
        ),
        pytest.param(
            "tick_seconds: 5",
            "tick_seconds: 0.5",
            r"loop\.tick_seconds=0\.5: Input should be greater than or equal to 1",
            id="tick below one second",
        ),
        pytest.param(
            "max_replicas: 20",
            "max_replicas: 1",
            r"workloads\[ml/llama\]\.max_replicas=1 is out of range: allowed >= max\(1, min_replicas=2\)",
            id="max below min is caught by the core policy check",
        ),
        pytest.param(
            "min_replicas: 2",
            "min_replicas: 2\n    colour: blue",
            r"workloads\[ml/llama\]\.colour='blue': Extra inputs are not permitted",
            id="unknown field is rejected, not ignored",
        ),
        pytest.param(
            "name: llama",
            "name: Llama_7B",
            r"workloads\[ml/Llama_7B\]\.name='Llama_7B': String should match pattern",
            id="workload name must be a Kubernetes name",
        ),
        pytest.param(
            "select_policy: Min",
            "select_policy: Median",
            r"select_policy='Median': Input should be 'Max', 'Min' or 'Disabled'",
            id="select policy outside the HPA enum",
        ),
        pytest.param(
            "min_replicas: 2",
            "min_replicas: 2\n    forecast: {floor_quantile: 1.5}",
            r"workloads\[ml/llama\]\.forecast\.floor_quantile=1\.5: Input should be less than 1",
            id="floor quantile outside (0, 1)",
        ),
        pytest.param(
            "min_replicas: 2",
            "min_replicas: 2\n    objective: {unserved_share: 0}",
            r"workloads\[ml/llama\]\.objective\.unserved_share=0: Input should be greater than 0",
            id="objective of nothing unserved",
        ),
        pytest.param(
            "min_replicas: 2",
            "min_replicas: 2\n    objective: {unserved_share: 1.0}",
            r"workloads\[ml/llama\]\.objective\.unserved_share=1\.0: Input should be less than 1",
            id="objective of everything unserved",
        ),
        pytest.param(
            "min_replicas: 2",
            "min_replicas: 0\n    activation_utilization: 1.5",
            r"workloads\[ml/llama\]\.activation_utilization=1\.5: Input should be less than 1",
            id="activation threshold of a whole replica or more",
        ),
        pytest.param(
            "min_replicas: 2",
            "min_replicas: 2\n    objective: {ttft_attainment: 1}",
            r"workloads\[ml/llama\]\.objective\.ttft_attainment=1: Input should be less than 1",
            id="a TTFT attainment of every request",
        ),
        pytest.param("tick_seconds: 5", "tick_seconds: [5", r"not valid YAML", id="broken YAML"),
        pytest.param(
            '"$namespace"',
            '"$namespace",model="$model"',
            r"workloads\[ml/llama\]: Value error, queries\.load uses unknown placeholder\(s\) \['model'\]",
            id="unknown query placeholder",
        ),
    ],
)
def test_bad_field_is_rejected_with_its_name(old, new, expected):
    assert old in GOOD
    with pytest.raises(SettingsError, match=expected):
        parse_settings(GOOD.replace(old, new, 1))


def test_top_level_list_is_rejected():
    with pytest.raises(SettingsError, match="must be a YAML mapping, got list"):
        parse_settings("- tick_seconds: 5\n")


def test_duplicate_workload_is_rejected():
    entry = GOOD[GOOD.index("  - name: llama") :]
    with pytest.raises(SettingsError, match="ml/llama is listed twice"):
        parse_settings(GOOD + entry)


def test_unknown_forecast_model_is_rejected():
    misspelt = GOOD.replace("min_replicas: 2", "min_replicas: 2\n    forecast: {model: lightgmb}")
    message = r"forecast\.model='lightgmb' is not a known model: allowed \[.*'lightgbm'"
    with pytest.raises(SettingsError, match=message):
        parse_settings(misspelt)


def test_reload_accepts_good_change_and_rejects_bad_one(tmp_path: Path):
    path = tmp_path / "settings.yaml"
    path.write_text(GOOD)
    watched = SettingsFile(path)
    first = watched.load()
    assert watched.reload() is None, "unchanged content is not a change"

    path.write_text(GOOD.replace("tick_seconds: 5", "tick_seconds: 2"))
    change = watched.reload()
    assert change is not None and change.settings is not None
    assert change.settings.loop.tick_seconds == 2
    assert first.loop.tick_seconds == 5

    path.write_text(GOOD.replace("tick_seconds: 5", "tick_seconds: -1"))
    rejected = watched.reload()
    assert rejected is not None and rejected.settings is None
    assert rejected.error is not None and "loop.tick_seconds=-1" in rejected.error
    assert watched.reload() is None, "a rejected file is reported once, not every poll"

    path.write_text(GOOD + "1: typo\n")
    unnamed = watched.reload()
    assert unnamed is not None and unnamed.error == "settings keys must be names, got 1"

    path.unlink()
    assert watched.reload() is None, "a file that disappears keeps the running settings"


def test_tls_certificate_without_key_is_rejected():
    with pytest.raises(SettingsError, match="tls_cert_file and tls_key_file must be set together"):
        parse_settings(GOOD + "server: {tls_cert_file: /tls/tls.crt}\n")


def test_forecast_defaults_are_the_policy_defaults() -> None:
    from autoscaler.policy import ScalingPolicy
    from sidecar.settings import ForecastSettings

    policy = ScalingPolicy(replica_capacity_rps=1.0)
    defaults = ForecastSettings()
    assert defaults.quantile == policy.forecast_quantile
    assert defaults.floor_quantile == policy.forecast_floor_quantile
    assert defaults.scale_down_window_seconds == policy.forecast_scale_down_window_seconds


def test_a_workload_declares_an_objective_by_default() -> None:
    from autoscaler.objective import DEFAULT_UNSERVED_SHARE

    workload = parse_settings(GOOD).workloads[0]
    assert workload.objective.unserved_share == DEFAULT_UNSERVED_SHARE
    assert workload.to_policy().objective_unserved_share == DEFAULT_UNSERVED_SHARE


def test_the_ttft_objective_applies_only_where_a_ttft_histogram_is_read() -> None:
    from autoscaler.objective import DEFAULT_TTFT_ATTAINMENT

    plain = parse_settings(GOOD).workloads[0]
    assert plain.objective.ttft_attainment == DEFAULT_TTFT_ATTAINMENT
    # Nothing to measure it on: a latency objective that never reads would never let go.
    assert plain.to_policy().objective_ttft_attainment is None
    vllm = parse_settings(
        "kubernetes: {enabled: false}\nworkloads:\n  - name: llama\n    preset: vllm\n"
        "    ttft_target_seconds: 2\n    objective: {ttft_attainment: 0.95}\n"
    ).workloads[0]
    assert vllm.to_policy().objective_ttft_attainment == 0.95


def test_settings_nested_too_deeply_are_a_settings_error():
    with pytest.raises(SettingsError, match="nested too deeply"):
        parse_settings("workloads: " + "[" * 5000 + "]" * 5000)


def test_an_alias_bomb_is_refused_before_it_is_expanded():
    """Finding 1: nine levels of nine aliases are 387 million strings once expanded; refused from
    the node graph, in a one-line message that quotes none of it."""
    with pytest.raises(SettingsError) as refused:
        parse_settings(alias_bomb())
    message = str(refused.value)
    assert "alias bomb" in message and len(message) < 300 and "\n" not in message


def test_aliases_a_configuration_would_use_still_work():
    text = textwrap.dedent(
        """
        workloads:
          - &base {name: llama, namespace: ml, queries: {load: q}, replica_capacity_rps: 10}
          - {<<: *base, name: mistral}
        """
    )
    settings = parse_settings(text)
    assert [w.name for w in settings.workloads] == ["llama", "mistral"]


def test_a_file_over_a_configmap_is_refused_without_parsing(tmp_path: Path):
    """Finding 2: a 50 MB file is refused by its size, in one line naming the file and the limit."""
    path = tmp_path / "settings.yaml"
    path.write_text(oversize(50))
    with pytest.raises(SettingsError) as refused:
        load_settings(path)
    assert f"{path}: the settings file is" in str(refused.value)
    assert "over the 1,048,576-byte limit" in str(refused.value)


def test_a_bad_value_is_quoted_short():
    huge = "x" * 100_000
    with pytest.raises(SettingsError) as refused:
        parse_settings(f"log_level: {huge}\n")
    assert len(str(refused.value)) < 400


def test_a_prometheus_timeout_that_would_cost_the_tick_is_refused():
    with pytest.raises(SettingsError, match=r"prometheus.timeout_seconds=5 must be at most 0.4 x"):
        parse_settings("prometheus: {timeout_seconds: 5}\nloop: {workload_timeout_seconds: 10}\n")
    assert parse_settings("prometheus: {timeout_seconds: 5}\nloop: {workload_timeout_seconds: 12.5}\n")
