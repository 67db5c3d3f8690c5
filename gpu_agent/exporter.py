"""Prometheus exposition of the newest GPU sample: our `gpu_agent_*` series, DCGM-compatible
series, and the aiohttp routes `/metrics` and `/healthz`.

The collector renders whatever snapshot the sampling loop published last; a scrape never touches
NVML or the kubelet. A field NVML could not read has no series at all (never 0), and the reason is
exported as `gpu_agent_field_unavailable`.

Labels, decided here:
- Our series (`gpu_agent_*`) are per device: `gpu` (NVML index), `uuid`, and `gpu_instance` on MIG
  instances only. They carry no pod labels, so a pod restart does not start new value series.
  Attribution is one info series, `gpu_agent_gpu_pod_info{gpu,uuid,[gpu_instance],namespace,pod,
  container} 1`, joined where needed, info on the left because a shared GPU has several holders:
  `gpu_agent_gpu_pod_info * on(uuid) group_left gpu_agent_utilization_ratio` (one series per pod).
- The DCGM-compatible series (`DCGM_FI_DEV_*`) copy dcgm-exporter's labels and units so its
  dashboards work unchanged: `gpu`, `UUID` (the parent GPU's on MIG instances), `device`
  (`nvidia<index>`), `modelName`, `GPU_I_ID` on MIG instances, `Hostname`, `DCGM_FI_DRIVER_VERSION`,
  and `namespace`, `pod`, `container` only on devices allocated to a pod, one series per holder
  when a GPU is shared, as dcgm-exporter does. Like dcgm-exporter's default device mode, a
  MIG-enabled GPU appears only through its instances. Not reproduced: `pci_bus_id`, `GPU_I_PROFILE`.
- On a MIG GPU our own series keep both views: the parent (no `gpu_instance`) is the whole board,
  the instances subdivide it; sum over `{gpu_instance=""}` to count each board once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gpu_agent.nvml_reader import GpuSample
from gpu_agent.pod_resources import PodRef

_MEBIBYTE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """Everything one sampling tick learned.

    `pods_by_device` is None when attribution is unknown (socket not configured or the call
    failed); `pod_resources_up` is None when no socket is configured at all.
    """

    sampled_at: float
    nvml_up: bool
    driver_version: str | None = None
    gpus: tuple[GpuSample, ...] = ()
    pods_by_device: Mapping[str, tuple[PodRef, ...]] | None = None
    pod_resources_up: bool | None = None


class LatestSnapshot:
    """The hand-over point: the sampling loop writes, scrapes read; both run on one event loop."""

    def __init__(self) -> None:
        self._snapshot: AgentSnapshot | None = None

    def publish(self, snapshot: AgentSnapshot) -> None:
        self._snapshot = snapshot

    @property
    def current(self) -> AgentSnapshot | None:
        return self._snapshot


@dataclass(frozen=True, slots=True)
class _Gauge:
    """One per-device gauge: our name and base-unit value, and its DCGM twin in DCGM's unit."""

    name: str
    documentation: str
    value: Callable[[GpuSample], float | None]
    dcgm_name: str | None = None
    dcgm_value: Callable[[GpuSample], float | None] | None = None
    # A property of the physical board that MIG instances share (power, temperature, SM clock).
    board_wide: bool = False


def _ratio(percent: int | None) -> float | None:
    # NVML gives whole percents: 63 % is exported as 0.63.
    return None if percent is None else percent / 100


def _mebibytes(size_bytes: int | None) -> float | None:
    # DCGM's FB_* fields are MiB: 10 GiB = 10737418240 B is 10240.
    return None if size_bytes is None else size_bytes / _MEBIBYTE


_GAUGES = (
    _Gauge(
        "gpu_agent_utilization_ratio",
        "Fraction of the last sample period in which a kernel ran on the GPU (0-1).",
        lambda s: _ratio(s.utilization_percent),
        "DCGM_FI_DEV_GPU_UTIL",
        lambda s: s.utilization_percent,
    ),
    _Gauge(
        "gpu_agent_memory_copy_utilization_ratio",
        "Fraction of the last sample period in which device memory was read or written (0-1).",
        lambda s: _ratio(s.memory_copy_utilization_percent),
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        lambda s: s.memory_copy_utilization_percent,
    ),
    _Gauge(
        "gpu_agent_memory_used_bytes",
        "Device memory in use, driver reservations included.",
        lambda s: s.memory_used_bytes,
        "DCGM_FI_DEV_FB_USED",
        lambda s: _mebibytes(s.memory_used_bytes),
    ),
    _Gauge(
        "gpu_agent_memory_free_bytes",
        "Device memory free.",
        lambda s: s.memory_free_bytes,
        "DCGM_FI_DEV_FB_FREE",
        lambda s: _mebibytes(s.memory_free_bytes),
    ),
    _Gauge("gpu_agent_memory_total_bytes", "Device memory installed.", lambda s: s.memory_total_bytes),
    _Gauge(
        "gpu_agent_power_watts",
        "Power draw of the board.",
        lambda s: s.power_watts,
        "DCGM_FI_DEV_POWER_USAGE",
        lambda s: s.power_watts,
        board_wide=True,
    ),
    _Gauge(
        "gpu_agent_temperature_celsius",
        "GPU die temperature.",
        lambda s: s.temperature_celsius,
        "DCGM_FI_DEV_GPU_TEMP",
        lambda s: s.temperature_celsius,
        board_wide=True,
    ),
    _Gauge(
        "gpu_agent_sm_clock_hertz",
        "Streaming multiprocessor clock.",
        # 1755 MHz is 1.755e9 Hz.
        lambda s: None if s.sm_clock_megahertz is None else s.sm_clock_megahertz * 1e6,
        "DCGM_FI_DEV_SM_CLOCK",
        lambda s: s.sm_clock_megahertz,
        board_wide=True,
    ),
    _Gauge(
        "gpu_agent_encoder_utilization_ratio",
        "Video encoder utilization (0-1).",
        lambda s: _ratio(s.encoder_utilization_percent),
        "DCGM_FI_DEV_ENC_UTIL",
        lambda s: s.encoder_utilization_percent,
    ),
    _Gauge(
        "gpu_agent_decoder_utilization_ratio",
        "Video decoder utilization (0-1).",
        lambda s: _ratio(s.decoder_utilization_percent),
        "DCGM_FI_DEV_DEC_UTIL",
        lambda s: s.decoder_utilization_percent,
    ),
    _Gauge(
        "gpu_agent_running_processes",
        "Compute processes running on the device.",
        lambda s: None if s.processes is None else len(s.processes),
    ),
)


def _device_labels(sample: GpuSample) -> dict[str, str]:
    labels = {"gpu": str(sample.index)}
    if sample.uuid is not None:
        labels["uuid"] = sample.uuid
    if sample.gpu_instance_id is not None:
        labels["gpu_instance"] = str(sample.gpu_instance_id)
    return labels


def _holders(
    sample: GpuSample, pods_by_device: Mapping[str, tuple[PodRef, ...]] | None
) -> tuple[PodRef, ...]:
    """Containers holding the device: by its UUID, or by GKE's device name (`nvidia0` for a whole
    GPU, `nvidia1/gi2` for GPU instance 2 of GPU 1)."""
    if pods_by_device is None or sample.uuid is None:
        return ()
    name = f"nvidia{sample.index}"
    if sample.gpu_instance_id is not None:
        name += f"/gi{sample.gpu_instance_id}"
    return pods_by_device.get(sample.uuid, ()) or pods_by_device.get(name, ())


class GpuCollector:
    """Renders the latest snapshot at scrape time."""

    def __init__(self, latest: LatestSnapshot, hostname: str) -> None:
        self._latest = latest
        self._hostname = hostname

    def collect(self) -> Iterator[Metric]:
        snapshot = self._latest.current
        if snapshot is None:
            return
        nvml_up = GaugeMetricFamily("gpu_agent_nvml_up", "1 when NVML answered on the last sample, else 0.")
        nvml_up.add_metric([], 1.0 if snapshot.nvml_up else 0.0)
        yield nvml_up
        sampled = GaugeMetricFamily(
            "gpu_agent_last_sample_timestamp_seconds", "Unix time of the sample these series come from."
        )
        sampled.add_metric([], snapshot.sampled_at)
        yield sampled
        if snapshot.pod_resources_up is not None:
            pods_up = GaugeMetricFamily(
                "gpu_agent_pod_resources_up", "1 when the kubelet pod-resources List call succeeded, else 0."
            )
            pods_up.add_metric([], 1.0 if snapshot.pod_resources_up else 0.0)
            yield pods_up
        yield from self._collect_devices(snapshot)

    def _collect_devices(self, snapshot: AgentSnapshot) -> Iterable[Metric]:
        readable = [gpu for gpu in snapshot.gpus if gpu.uuid is not None]
        for gauge in _GAUGES:
            ours = GaugeMetricFamily(gauge.name, gauge.documentation)
            for gpu in readable:
                value = gauge.value(gpu)
                if value is not None:
                    ours.add_sample(gauge.name, _device_labels(gpu), float(value))
            yield ours
            if gauge.dcgm_name is not None and gauge.dcgm_value is not None:
                yield self._dcgm_family(gauge, gauge.dcgm_name, gauge.dcgm_value, snapshot)
        yield self._info_family(snapshot, readable)
        yield self._pod_info_family(snapshot, readable)
        yield self._unavailable_family(snapshot)

    def _dcgm_family(
        self,
        gauge: _Gauge,
        name: str,
        value_of: Callable[[GpuSample], float | None],
        snapshot: AgentSnapshot,
    ) -> Metric:
        """dcgm-exporter's default ("flex") view: a MIG-enabled GPU appears only as its instances,
        so `sum(DCGM_FI_DEV_FB_USED)` does not count a board twice; board-wide fields (power,
        temperature, SM clock) repeat the parent's value on each instance, as DCGM reports them."""
        family = GaugeMetricFamily(name, f"{gauge.documentation} (DCGM exporter unit)")
        parents = {gpu.uuid: gpu for gpu in snapshot.gpus if gpu.gpu_instance_id is None}
        # A GPU in MIG mode stays out even when none of its instances could be read: its board-wide
        # totals would otherwise stand in for instances as if it were a whole GPU.
        mig_parents = {gpu.uuid for gpu in snapshot.gpus if gpu.mig_enabled} | {
            gpu.parent_uuid for gpu in snapshot.gpus if gpu.parent_uuid is not None
        }
        for gpu in snapshot.gpus:
            if gpu.uuid is None or gpu.uuid in mig_parents:
                continue
            parent = parents.get(gpu.parent_uuid) if gpu.parent_uuid is not None else gpu
            value = value_of(gpu)
            if value is None and gauge.board_wide and parent is not None:
                value = value_of(parent)
            if value is None:
                continue
            labels = {
                "gpu": str(gpu.index),
                "UUID": gpu.parent_uuid or gpu.uuid,
                "device": f"nvidia{gpu.index}",
                "modelName": (parent.model_name if parent is not None else None) or gpu.model_name or "",
                "Hostname": self._hostname,
            }
            if gpu.gpu_instance_id is not None:
                labels["GPU_I_ID"] = str(gpu.gpu_instance_id)
            if snapshot.driver_version is not None:
                labels["DCGM_FI_DRIVER_VERSION"] = snapshot.driver_version
            holders = _holders(gpu, snapshot.pods_by_device)
            if not holders:
                family.add_sample(name, labels, float(value))
            for holder in holders:
                pod_labels = {"namespace": holder.namespace, "pod": holder.pod, "container": holder.container}
                family.add_sample(name, labels | pod_labels, float(value))
        return family

    def _info_family(self, snapshot: AgentSnapshot, readable: list[GpuSample]) -> Metric:
        family = GaugeMetricFamily("gpu_agent_gpu_info", "Static facts about each device; value is always 1.")
        for gpu in readable:
            labels = _device_labels(gpu) | {"model_name": gpu.model_name or ""}
            if snapshot.driver_version is not None:
                labels["driver_version"] = snapshot.driver_version
            family.add_sample("gpu_agent_gpu_info", labels, 1.0)
        return family

    def _pod_info_family(self, snapshot: AgentSnapshot, readable: list[GpuSample]) -> Metric:
        family = GaugeMetricFamily(
            "gpu_agent_gpu_pod_info", "The container each device is allocated to; value is always 1."
        )
        for gpu in readable:
            for holder in _holders(gpu, snapshot.pods_by_device):
                pod_labels = {"namespace": holder.namespace, "pod": holder.pod, "container": holder.container}
                family.add_sample("gpu_agent_gpu_pod_info", _device_labels(gpu) | pod_labels, 1.0)
        return family

    def _unavailable_family(self, snapshot: AgentSnapshot) -> Metric:
        family = GaugeMetricFamily(
            "gpu_agent_field_unavailable",
            "1 for each field NVML could not read on the last sample; `reason` is the NVML error.",
        )
        for gpu in snapshot.gpus:
            for field_name, reason in sorted(gpu.unavailable.items()):
                labels = _device_labels(gpu) | {"field": field_name, "reason": reason}
                family.add_sample("gpu_agent_field_unavailable", labels, 1.0)
        return family


def build_registry(latest: LatestSnapshot, hostname: str) -> CollectorRegistry:
    """An explicit registry holding only the GPU collector (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GpuCollector(latest, hostname))
    return registry


def build_app(registry: CollectorRegistry, is_healthy: Callable[[], bool]) -> web.Application:
    """`GET /metrics` renders the registry; `GET /healthz` is 200 while `is_healthy()` holds, else 503."""

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        # Text format 0.0.4, which every Prometheus 2.x parses; our names need nothing newer.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def healthz(_request: web.Request) -> web.Response:
        if is_healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="sampling loop has not completed a tick recently\n")

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz)])
    return app
