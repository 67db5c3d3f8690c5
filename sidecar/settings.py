"""Sidecar settings: one YAML file (a mounted ConfigMap) plus environment overrides, validated at load.

Every error names the field, the value and what is allowed, and a workload's fields are named by
the workload (`workloads[ml/llama].target_utilization`), not by its position in the list. A file
that changes on disk is re-read by `SettingsFile.reload()`; a bad new file is rejected and the old
settings keep running.

Environment variables override the file: `PREDICTIVE_AUTOSCALER_LOOP__TICK_SECONDS=1` sets
`loop.tick_seconds` (prefix, then the path with `__` between levels).
"""

from __future__ import annotations

import hashlib
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from string import Template
from typing import Any, Literal

import pydantic_settings
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from autoscaler.cost import DEFAULT_GPUS_PER_REPLICA, CostBasis
from autoscaler.objective import DEFAULT_TTFT_ATTAINMENT, DEFAULT_UNSERVED_SHARE
from autoscaler.observations import Signal
from autoscaler.policy import (
    DEFAULT_ACTIVATION_UTILIZATION,
    DEFAULT_KV_CACHE_UTILIZATION_TARGET,
    PolicyError,
    RatePolicy,
    RatePolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    default_scale_down,
    default_scale_up,
)
from forecasting.registry import DEFAULT_MODEL, MODELS
from sidecar.budgets import READ_SHARE
from sidecar.engine_presets import LoadUnit, engine_presets

ENV_PREFIX = "PREDICTIVE_AUTOSCALER_"
# A ConfigMap holds at most 1 MiB, so a bigger settings file is a mistake; checked before reading,
# since parsing 50 MB of YAML takes minutes of CPU.
MAX_SETTINGS_BYTES = 1024 * 1024
# Counted on the document with every alias expanded, before anything walks it: nine nested
# aliases of nine ("billion laughs") are a few hundred bytes of YAML and 10^9 nodes. A thousand
# workloads of a dozen fields each stay far below this.
MAX_SETTINGS_NODES = 200_000
MAX_SETTINGS_ALIASES = 1_000
# Kubernetes object names (RFC 1123 labels / subdomains): also what keeps them safe in PromQL.
_DNS_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class SettingsError(ValueError):
    """The settings file or an override is invalid; the message lists every bad field."""


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateSettings(_Strict):
    """One HPA rate policy: at most `value` pods or percent per `period_seconds`."""

    type: RatePolicyType
    value: int = Field(gt=0)
    period_seconds: float = Field(ge=1, le=1800)


class RulesSettings(_Strict):
    """One direction of HPA `behavior`, in the HPA's own vocabulary."""

    stabilization_window_seconds: float = Field(ge=0, le=3600)
    select_policy: SelectPolicy = SelectPolicy.MAX
    policies: tuple[RateSettings, ...] = ()

    def to_rules(self) -> ScalingRules:
        return ScalingRules(
            stabilization_window_seconds=self.stabilization_window_seconds,
            select_policy=self.select_policy,
            policies=tuple(RatePolicy(p.type, p.value, p.period_seconds) for p in self.policies),
        )


class BehaviorSettings(_Strict):
    """HPA-compatible behavior; a missing direction takes the HPA v2 defaults."""

    scale_up: RulesSettings | None = None
    scale_down: RulesSettings | None = None


class TargetSettings(_Strict):
    """The scale target: the object whose replicas we recommend."""

    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    name: str | None = Field(default=None, pattern=_DNS_NAME, max_length=253)


class QuerySettings(_Strict):
    """PromQL per signal. `$namespace` and `$workload` are replaced by the workload's (escaped)
    values, so one template serves many workloads. Units: load in requests per second for the
    whole workload (or tokens per second, with `load_unit: tokens`), latency in seconds, queue in
    requests, GPU and KV-cache utilization as 0..1 ratios, TTFT in seconds (a high quantile);
    `ttft_histogram` answers one series per `le`, the TTFT histogram's bucket rates over the last
    minute summed by `le` (what the objective's TTFT misses are read from). A workload's
    `preset` fills these from its engine's metrics; any given here wins, null drops one."""

    load: str = Field(min_length=1)
    p99_latency: str | None = None
    queue_depth: str | None = None
    gpu_utilization: str | None = None
    kv_cache_utilization: str | None = None
    ttft: str | None = None
    ttft_histogram: str | None = None


class ForecastSettings(_Strict):
    """`quantile` (pre-warm) and `floor_quantile` are expert overrides: unset, the objective
    chooses them online (autoscaler.objective)."""

    model: str = Field(default=DEFAULT_MODEL, min_length=1)
    quantile: float | None = Field(default=None, gt=0, lt=1)
    floor_quantile: float | None = Field(default=None, gt=0, lt=1)
    # The scale-down window while a trusted forecast is in use (ScalingPolicy); 300 keeps HPA's.
    scale_down_window_seconds: float = Field(default=0.0, ge=0, le=3600)
    headroom: float = Field(default=0.0, ge=0, le=10)


class ObjectiveSettings(_Strict):
    """What the workload must meet: at most `unserved_share` of its demand may find no ready
    replica (0.001: one request in a thousand), over a trailing day. With `ttft_target_seconds`
    and `queries.ttft_histogram` (preset: vllm has it), also `ttft_attainment` of its requests
    must get their first token within the target (0.99: one in a hundred may miss); a target
    between two bucket edges is interpolated within its bucket as histogram_quantile does."""

    unserved_share: float = Field(default=DEFAULT_UNSERVED_SHARE, gt=0, lt=1)
    ttft_attainment: float = Field(default=DEFAULT_TTFT_ATTAINMENT, gt=0, lt=1)


class PrewarmSettings(_Strict):
    """Direct pre-warm: raise this HPA's minReplicas (or KEDA ScaledObject's minReplicaCount)
    ahead of forecast load and restore it afterwards."""

    kind: Literal["HorizontalPodAutoscaler", "ScaledObject"] = "HorizontalPodAutoscaler"
    name: str = Field(pattern=_DNS_NAME, max_length=253)


class WorkloadSettings(_Strict):
    """One scaled workload. `cold_start_seconds`, when set, replaces the learned estimate.
    `preset` (an engine: sidecar/presets/) fills the queries from the engine's own metrics, its
    pods picked by `preset_selector` (PromQL label matchers; null: the preset's own). Without
    `replica_capacity_rps` the capacity is learned from the queue and TTFT (autoscaler.capacity);
    until it is, the reactive signals alone decide. With `min_replicas: 0` (KEDA's
    `minReplicaCount: 0`) the forecast decides when the last replica may go (no demand expected
    within twice the lead, cold start plus decision delay, at the objective's quantile) and when
    the first comes back (one cold start ahead, through IsActive); load and forecast at or below
    `activation_utilization` of one replica's target load (default 0.1) count as none, so rare
    noise keeps no replica warm."""

    name: str = Field(pattern=_DNS_NAME, max_length=253)
    namespace: str = Field(default="default", pattern=_DNS_NAME, max_length=63)
    target: TargetSettings = TargetSettings()
    labels: dict[str, str] = Field(default_factory=dict)
    preset: str | None = Field(default=None, json_schema_extra={"enum": [*sorted(engine_presets()), None]})
    preset_selector: str | None = Field(default=None, min_length=1)
    load_unit: LoadUnit = LoadUnit.REQUESTS
    queries: QuerySettings
    replica_capacity_rps: float | None = Field(default=None, gt=0)
    target_utilization: float = Field(default=0.7, gt=0, le=1)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=100, ge=1)
    # With min_replicas 0: load and forecast at or below this share of one replica's target load
    # count as no demand (autoscaler.scale_to_zero), as KEDA's activationTargetValue.
    activation_utilization: float = Field(default=DEFAULT_ACTIVATION_UTILIZATION, ge=0, lt=1)
    p99_latency_target_seconds: float | None = Field(default=None, gt=0)
    queue_depth_target_per_replica: float | None = Field(default=None, gt=0)
    gpu_utilization_target: float | None = Field(default=None, gt=0, le=1)
    kv_cache_utilization_target: float | None = Field(default=DEFAULT_KV_CACHE_UTILIZATION_TARGET, gt=0, le=1)
    ttft_target_seconds: float | None = Field(default=None, gt=0)
    stale_after_seconds: float = Field(default=90.0, gt=0)
    behavior: BehaviorSettings = BehaviorSettings()
    forecast: ForecastSettings = ForecastSettings()
    objective: ObjectiveSettings = ObjectiveSettings()
    cold_start_seconds: float | None = Field(default=None, ge=0, le=3600)
    default_cold_start_seconds: float = Field(default=120.0, ge=0, le=3600)
    prewarm: PrewarmSettings | None = None
    # Cost on /metrics: GPUs one replica holds, and what a GPU-hour costs (None: no money figure).
    gpus_per_replica: float = Field(default=DEFAULT_GPUS_PER_REPLICA, ge=0, le=64)
    price_per_gpu_hour: float | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        """The preset's queries under the workload's own: what the workload writes wins."""
        if not isinstance(data, Mapping) or data.get("preset") is None:
            return data
        presets = engine_presets()
        name = data["preset"]
        if not isinstance(name, str) or name not in presets:
            raise ValueError(f"preset={_short(name)} is not a known engine preset: allowed {sorted(presets)}")
        own = data.get("queries", {})
        if not isinstance(own, Mapping):
            return data  # the field's own validation names the problem
        selector = data.get("preset_selector")
        raw_unit = data.get("load_unit", LoadUnit.REQUESTS)
        if raw_unit not in set(LoadUnit):
            raw_unit = LoadUnit.REQUESTS  # the field's own validation names the allowed units
        matchers = selector if isinstance(selector, str) else None
        try:
            filled = presets[name].templates(LoadUnit(raw_unit), matchers)
        except ValueError as error:
            raise ValueError(f"load_unit={_short(raw_unit)}: {error}") from None
        return {**data, "queries": {**filled, **own}}

    @model_validator(mode="after")
    def _capacity_known_or_learnable(self) -> WorkloadSettings:
        learnable = self.queries.queue_depth is not None or (
            self.queries.ttft is not None and self.ttft_target_seconds is not None
        )
        if self.replica_capacity_rps is None and not learnable:
            raise ValueError(
                "replica_capacity_rps is unset and cannot be learned: set it, or give queries.queue_depth"
                " (or queries.ttft with ttft_target_seconds) to learn it from, e.g. with preset: vllm"
            )
        return self

    @model_validator(mode="after")
    def _known_placeholders(self) -> WorkloadSettings:
        known = {"namespace", "workload", *self.labels}
        for signal in Signal:
            template = getattr(self.queries, signal)
            if template is None:
                continue
            parsed = Template(template)
            if not parsed.is_valid():
                raise ValueError(f"queries.{signal} has a bad placeholder; write a literal $ as $$")
            unknown = set(parsed.get_identifiers()) - known
            if unknown:
                raise ValueError(
                    f"queries.{signal} uses unknown placeholder(s) {sorted(unknown)}: allowed {sorted(known)}"
                )
        return self

    def policy_targets(self) -> tuple[float | None, float | None]:
        """What says whether a capacity pair is saturated: changing it voids learned evidence."""
        return (self.queue_depth_target_per_replica, self.ttft_target_seconds)

    @property
    def target_name(self) -> str:
        return self.target.name or self.name

    def cost_basis(self) -> CostBasis:
        return CostBasis(self.gpus_per_replica, self.replica_capacity_rps, self.price_per_gpu_hour)

    def to_policy(self) -> ScalingPolicy:
        """The core's policy, validated; raises SettingsError naming this workload."""
        behavior = self.behavior
        policy = ScalingPolicy(
            replica_capacity_rps=self.replica_capacity_rps,
            target_utilization=self.target_utilization,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            activation_utilization=self.activation_utilization,
            p99_latency_target_seconds=self.p99_latency_target_seconds,
            queue_depth_target_per_replica=self.queue_depth_target_per_replica,
            gpu_utilization_target=self.gpu_utilization_target,
            kv_cache_utilization_target=self.kv_cache_utilization_target,
            ttft_target_seconds=self.ttft_target_seconds,
            stale_after_seconds=self.stale_after_seconds,
            forecast_quantile=self.forecast.quantile,
            forecast_floor_quantile=self.forecast.floor_quantile,
            objective_unserved_share=self.objective.unserved_share,
            # Without the histogram there is nothing to measure the attainment on: a latency
            # objective that never reads would never let the level fall.
            objective_ttft_attainment=self.objective.ttft_attainment
            if self.queries.ttft_histogram is not None
            else None,
            forecast_scale_down_window_seconds=self.forecast.scale_down_window_seconds,
            forecast_headroom=self.forecast.headroom,
            default_cold_start_seconds=self.default_cold_start_seconds,
            scale_up=behavior.scale_up.to_rules() if behavior.scale_up else default_scale_up(),
            scale_down=behavior.scale_down.to_rules() if behavior.scale_down else default_scale_down(),
        )
        try:
            return policy.validate()
        except PolicyError as error:
            raise SettingsError(f"workloads[{self.namespace}/{self.name}].{error}") from error


class PrometheusSettings(_Strict):
    url: str = Field(default="http://localhost:9090", pattern=r"^https?://[^\s]+$")
    # At most READ_SHARE of loop.workload_timeout_seconds (checked on Settings; sidecar.budgets).
    timeout_seconds: float = Field(default=4.0, gt=0, le=60)


class LoopSettings(_Strict):
    """Control-loop cadence. History is read on a `history_step_seconds` grid, `history_seconds`
    deep (7 days at 60 s is 10,080 points: 80 KB per workload)."""

    tick_seconds: float = Field(default=15.0, ge=1, le=300)
    refit_interval_seconds: float = Field(default=3600.0, ge=10, le=7 * 86400)
    history_seconds: float = Field(default=7 * 86400.0, ge=60, le=60 * 86400)
    history_step_seconds: float = Field(default=60.0, ge=1, le=3600)
    forecast_horizon_seconds: float = Field(default=1800.0, ge=60, le=86400)
    workload_timeout_seconds: float = Field(default=10.0, gt=0, le=300)


class ServerSettings(_Strict):
    """Listening ports (0 picks a free one). `health_port` serves /healthz, /readyz and /metrics
    over plain HTTP for the kubelet and Prometheus; `http_port` the external metrics API and
    KEDA's metrics-api JSON (HTTPS when `tls_cert_file` and `tls_key_file` are set); `grpc_port`
    the KEDA external scaler. `client_ca_file` is the front proxy's client CA (the aggregator's
    requestheader CA) and `requestheader_allowed_names` the certificate names it may use.
    A decision older than `decision_max_age_seconds` is answered as unavailable, so a stalled
    loop makes HPA hold instead of reading an old number. Every listener closes a connection that
    sends no whole request within `idle_timeout_seconds` (of connecting or of its last answer) and
    holds at most `max_connections` at once (sidecar.listeners)."""

    host: str = "0.0.0.0"
    health_port: int = Field(default=8080, ge=0, le=65535)
    http_port: int = Field(default=6443, ge=0, le=65535)
    grpc_port: int = Field(default=9090, ge=0, le=65535)
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    client_ca_file: str | None = None
    # Mutual TLS for the gRPC scaler: clients (KEDA) must present a certificate signed by this CA.
    grpc_client_ca_file: str | None = None
    requestheader_allowed_names: tuple[str, ...] = ()
    allow_unauthenticated: bool = False
    decision_max_age_seconds: float = Field(default=120.0, gt=0, le=3600)
    # Above the 15-60 s between an HPA's or KEDA's polls, so their kept-alive connections survive.
    idle_timeout_seconds: float = Field(default=90.0, gt=0, le=3600)
    max_connections: int = Field(default=1000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.grpc_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("grpc_client_ca_file needs tls_cert_file and tls_key_file (mutual TLS is TLS)")
        return self


class KubernetesSettings(_Strict):
    """`enabled: false` runs without a cluster (replica counts then come from elsewhere or are
    missing). The Lease elects the one replica that writes pre-warm patches."""

    enabled: bool = True
    kubeconfig: str | None = None
    lease_name: str = Field(default="predictive-autoscaler", pattern=_DNS_NAME)
    lease_namespace: str = Field(default="default", pattern=_DNS_NAME)
    lease_duration_seconds: float = Field(default=15.0, ge=2, le=300)
    identity: str | None = None


class StateSettings(_Strict):
    path: str | None = None
    save_interval_seconds: float = Field(default=300.0, ge=1, le=86400)


class Settings(BaseSettings):
    """The whole sidecar configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    log_format: LogFormat = LogFormat.TEXT
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    prometheus: PrometheusSettings = PrometheusSettings()
    loop: LoopSettings = LoopSettings()
    server: ServerSettings = ServerSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    state: StateSettings = StateSettings()
    workloads: tuple[WorkloadSettings, ...] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _reads_fit_the_tick(self) -> Settings:
        budget = READ_SHARE * self.loop.workload_timeout_seconds
        if self.prometheus.timeout_seconds > budget:
            raise ValueError(
                f"prometheus.timeout_seconds={self.prometheus.timeout_seconds:g} must be at most"
                f" {READ_SHARE:g} x loop.workload_timeout_seconds ({budget:g} s), or a slow Prometheus"
                " costs the whole tick: lower it or raise loop.workload_timeout_seconds"
            )
        return self

    @model_validator(mode="after")
    def _unique_workloads(self) -> Settings:
        seen: set[tuple[str, str]] = set()
        for workload in self.workloads:
            key = (workload.namespace, workload.name)
            if key in seen:
                raise ValueError(f"workload {key[0]}/{key[1]} is listed twice")
            seen.add(key)
        return self


def parse_settings(text: str, source: str = "settings") -> Settings:
    """Settings from YAML text plus the environment; SettingsError lists every bad field.
    `source` names the text in a YAML error (the file's path)."""
    if len(text) > MAX_SETTINGS_BYTES:
        raise SettingsError(_too_big(len(text)))
    try:
        data = _safe_load_bounded(text) if text.strip() else {}
    except yaml.YAMLError as error:
        raise SettingsError(_describe_yaml_error(error, source)) from error
    except RecursionError:
        raise SettingsError("settings are nested too deeply to be a configuration") from None
    if not isinstance(data, Mapping):
        raise SettingsError(f"settings must be a YAML mapping, got {type(data).__name__}")
    unnamed = [key for key in data if not isinstance(key, str)]
    if unnamed:
        raise SettingsError(f"settings keys must be names, got {_short(unnamed[0])}")
    try:
        settings = Settings(**data)
    except ValidationError as error:
        raise SettingsError(_describe(error, data)) from None
    except pydantic_settings.SettingsError as error:
        # An environment override that is not valid JSON for a nested field.
        raise SettingsError(f"invalid environment override: {error}") from None
    for workload in settings.workloads:
        workload.to_policy()
        if workload.forecast.model not in MODELS:
            raise SettingsError(
                f"workloads[{workload.namespace}/{workload.name}].forecast.model="
                f"{workload.forecast.model!r} is not a known model: allowed {sorted(MODELS)}"
            )
    return settings


class _CountingLoader(yaml.SafeLoader):
    """Counts the aliases it resolves while composing, so a document made of aliases is refused
    before it is constructed into Python objects."""

    aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_SETTINGS_ALIASES:
                raise SettingsError(
                    f"settings use more than {MAX_SETTINGS_ALIASES} YAML aliases; write the values out"
                )
        return super().compose_node(parent, index)


def _safe_load_bounded(text: str) -> Any:
    loader = _CountingLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_SETTINGS_NODES:
            raise SettingsError(
                f"settings expand to more than {MAX_SETTINGS_NODES:,} YAML nodes once aliases are"
                " resolved; a configuration is far smaller, so this looks like an alias bomb"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document with every alias expanded, counted on the shared graph (each node's
    size once), and given up as soon as the count passes the cap."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_SETTINGS_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += size(key) + size(value)
                if total > MAX_SETTINGS_NODES:
                    break
        sizes[id(node)] = total
        return total

    return size(root)


def _too_big(size: int) -> str:
    return (
        f"the settings file is {size:,} bytes, over the {MAX_SETTINGS_BYTES:,}-byte limit"
        " (a ConfigMap holds at most 1 MiB); is this the right file?"
    )


def load_settings(path: Path) -> Settings:
    """Settings from a file. Anything that goes wrong (unreadable, oversize, a bug in a validator,
    memory) is a SettingsError naming the file, so no caller has to guess what else to catch."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SETTINGS_BYTES + 1)
        if len(raw) > MAX_SETTINGS_BYTES:
            raise SettingsError(f"{path}: {_too_big(path.stat().st_size)}")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"cannot read settings file {path}: {error}") from error
    try:
        return parse_settings(text, source=str(path))
    except SettingsError:
        raise
    except Exception as error:  # MemoryError included: a bad file must never take the service down
        raise SettingsError(f"cannot load settings file {path}: {type(error).__name__}: {error}") from error


def _describe_yaml_error(error: yaml.YAMLError, source: str) -> str:
    """One line: where (file, line, column) and what, instead of PyYAML's multi-line report."""
    mark = getattr(error, "problem_mark", None)
    where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else source
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    what = f"{context}: {problem}" if context else problem
    return f"{where}: not valid YAML ({' '.join(what.split())}); fix the file (deploy/examples/settings.yaml)"


# Values are quoted in error messages; a long one (or a structure) is shortened, not dumped.
_shorten = reprlib.Repr()
_shorten.maxstring = _shorten.maxother = 80


def _short(value: Any) -> str:
    return _shorten.repr(value)


def _describe(error: ValidationError, data: Mapping[str, Any]) -> str:
    lines = []
    for item in error.errors():
        where = _field_path(item["loc"], data)
        value = item.get("input")
        shown = "" if isinstance(value, Mapping) else f"={_short(value)}"
        lines.append(f"{where}{shown}: {item['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def _field_path(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> str:
    """`('workloads', 2, 'min_replicas')` -> `workloads[ml/llama].min_replicas` when the entry
    has a name, since users find their workload by name, not by position."""
    parts: list[str] = []
    node: Any = data
    for key in loc:
        if isinstance(key, int):
            entry = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(entry, Mapping) and "name" in entry:
                parts.append(f"[{entry.get('namespace', 'default')}/{entry['name']}]")
            else:
                parts.append(f"[{key}]")
            node = entry
        else:
            parts.append(f".{key}" if parts else str(key))
            node = node.get(key) if isinstance(node, Mapping) else None
    return "".join(parts) or "settings"


@dataclass(frozen=True, slots=True)
class Reload:
    """Outcome of one check of the settings file: `settings` is new and valid, or `error` says
    why the new content was rejected (the caller keeps running on its old settings)."""

    settings: Settings | None = None
    error: str | None = None


class SettingsFile:
    """A settings file watched by content: a ConfigMap update swaps a symlink, so mtimes are
    unreliable and we compare a hash of the bytes. A rejected content is reported once, not on
    every poll."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen_digest: str | None = None

    def load(self) -> Settings:
        settings = load_settings(self.path)
        self._seen_digest = self._digest()
        return settings

    def reload(self) -> Reload | None:
        """None when the content has not changed since the last load or rejection."""
        digest = self._digest()
        if digest is None or digest == self._seen_digest:
            return None
        self._seen_digest = digest
        try:
            return Reload(settings=load_settings(self.path))
        except SettingsError as error:
            return Reload(error=str(error))

    def _digest(self) -> str | None:
        # Hashed in blocks: an oversize file is rejected by load_settings, not held in memory here.
        try:
            with self.path.open("rb") as file:
                return hashlib.file_digest(file, "sha256").hexdigest()
        except OSError:
            return None
