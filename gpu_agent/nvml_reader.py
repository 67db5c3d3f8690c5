"""Reads every GPU and MIG instance through NVML into GpuSample values, in base units.

`nvml` is a parameter (the `pynvml` module of nvidia-ml-py in production) so nothing here loads a
library or keeps state. Each field is read on its own: an NVML error on one field drops that field
and records why in `unavailable`, and never turns into 0; one lost GPU never hides the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")

# NVML reports MIG mode as [current, pending]; 1 is NVML_DEVICE_MIG_ENABLE.
_MIG_ENABLED = 1


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A compute process on a GPU. `pid` is a host PID; memory is None where NVML cannot tell."""

    pid: int
    used_memory_bytes: int | None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One reading of a whole GPU (`gpu_instance_id` None) or of one MIG GPU instance.

    Values keep NVML's own integer units (percent, MHz) so that the exporter converts them once,
    exactly, into base units for our series and DCGM's units for the compatible ones; memory is in
    bytes and power in watts.

    `index` is the physical GPU's NVML index, shared by its MIG instances; `uuid` is the device's
    own UUID (`GPU-…`, or `MIG-…` for an instance), None only when the device cannot be read at
    all. Every measurement is None when NVML could not give it; `unavailable` maps the field name to
    the NVML error class name (`NotSupported`, `GpuIsLost`, …) that explains why. `mig_enabled`
    marks a whole GPU in MIG mode, whose instances (not the board) carry its per-instance series.
    """

    index: int
    uuid: str | None
    model_name: str | None = None
    gpu_instance_id: int | None = None
    parent_uuid: str | None = None
    utilization_percent: int | None = None
    memory_copy_utilization_percent: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_watts: float | None = None
    temperature_celsius: float | None = None
    sm_clock_megahertz: int | None = None
    encoder_utilization_percent: int | None = None
    decoder_utilization_percent: int | None = None
    processes: tuple[GpuProcess, ...] | None = None
    unavailable: Mapping[str, str] = field(default_factory=dict)
    mig_enabled: bool = False


class _FieldReader:
    """Calls NVML one field at a time and keeps the reason of each failure."""

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        # The unversioned process query raises NVMLLibraryMismatchError, a plain Exception and not an
        # NVMLError, when the driver predates its _v3 symbol (checked against nvidia-ml-py 13.615).
        mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
        # UnicodeDecodeError: nvidia-ml-py decodes NVML's strings itself, and a bad byte in one
        # name must cost that field, not the whole sample.
        self._errors: tuple[type[BaseException], ...] = (nvml.NVMLError, UnicodeDecodeError) + (
            (mismatch,) if isinstance(mismatch, type) else ()
        )
        self.unavailable: dict[str, str] = {}
        self.lost = False

    def read(self, field_name: str, call: Callable[[], T]) -> T | None:
        if self.lost:
            return None
        try:
            return call()
        except self._errors as error:
            if getattr(error, "value", None) == self._nvml.NVML_ERROR_GPU_IS_LOST:
                # A GPU that fell off the bus fails every query; one `device` entry says so.
                self.lost = True
                self.unavailable.clear()
                self.unavailable["device"] = _error_name(error)
            else:
                self.unavailable[field_name] = _error_name(error)
            return None


def _error_name(error: BaseException) -> str:
    # pynvml names each code's class NVMLError_<CamelCase>: NVMLError_NotSupported -> "NotSupported".
    name = type(error).__name__
    return name.removeprefix("NVMLError_") if name != "NVMLError" else "Unknown"


def _text(value: str | bytes) -> str:
    # nvidia-ml-py returns str; older pynvml releases returned bytes.
    return value.decode() if isinstance(value, bytes) else value


def read_driver_version(nvml: ModuleType) -> str | None:
    """The driver version string (`550.54.15`), or None when NVML cannot give it."""
    try:
        return _text(nvml.nvmlSystemGetDriverVersion())
    except nvml.NVMLError:
        return None


def read_gpus(nvml: ModuleType) -> list[GpuSample]:
    """Samples every GPU NVML enumerates, then each MIG instance of a MIG-enabled GPU after it.

    NVML must be initialised. Raises the NVMLError of `nvmlDeviceGetCount` when NVML cannot list
    devices at all (the caller reports NVML as down); every later error is confined to its field.
    """
    samples: list[GpuSample] = []
    for index in range(nvml.nvmlDeviceGetCount()):
        fields = _FieldReader(nvml)
        handle = fields.read("device", lambda index=index: nvml.nvmlDeviceGetHandleByIndex(index))
        if handle is None:
            samples.append(GpuSample(index=index, uuid=None, unavailable=fields.unavailable))
            continue
        gpu = _read_device(nvml, handle, index, fields, gpu_instance_id=None, parent_uuid=None)
        if fields.lost:
            samples.append(gpu)
            continue
        mig = _read_mig_instances(nvml, handle, gpu)
        problems = {**gpu.unavailable, **mig.unavailable}
        samples.append(replace(gpu, mig_enabled=mig.enabled, unavailable=problems))
        samples.extend(mig.instances)
    return samples


def _read_device(
    nvml: ModuleType,
    handle: object,
    index: int,
    fields: _FieldReader,
    gpu_instance_id: int | None,
    parent_uuid: str | None,
) -> GpuSample:
    uuid = fields.read("uuid", lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
    name = fields.read("model_name", lambda: _text(nvml.nvmlDeviceGetName(handle)))
    utilization = fields.read("utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    # The v1 memory struct: `used` includes driver-reserved memory, as nvidia-smi shows it; the v2
    # struct's meaning of `used` differs between driver branches (see the GPU ecosystem notes).
    memory = fields.read("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    power_mw = fields.read("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
    temperature = fields.read(
        "temperature", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
    )
    sm_clock_mhz = fields.read("sm_clock", lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
    # Encoder/decoder queries return [utilization %, sampling period µs]; the period is not exported.
    encoder = fields.read("encoder_utilization", lambda: nvml.nvmlDeviceGetEncoderUtilization(handle))
    decoder = fields.read("decoder_utilization", lambda: nvml.nvmlDeviceGetDecoderUtilization(handle))
    processes = fields.read("processes", lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    return GpuSample(
        index=index,
        uuid=uuid,
        model_name=name,
        gpu_instance_id=gpu_instance_id,
        parent_uuid=parent_uuid,
        utilization_percent=None if utilization is None else int(utilization.gpu),
        memory_copy_utilization_percent=None if utilization is None else int(utilization.memory),
        memory_used_bytes=None if memory is None else int(memory.used),
        memory_free_bytes=None if memory is None else int(memory.free),
        memory_total_bytes=None if memory is None else int(memory.total),
        # NVML reports milliwatts: 312500 mW is 312.5 W.
        power_watts=None if power_mw is None else power_mw / 1000,
        temperature_celsius=None if temperature is None else float(temperature),
        sm_clock_megahertz=None if sm_clock_mhz is None else int(sm_clock_mhz),
        encoder_utilization_percent=None if encoder is None else int(encoder[0]),
        decoder_utilization_percent=None if decoder is None else int(decoder[0]),
        processes=None if processes is None else tuple(_to_process(p) for p in processes),
        unavailable=fields.unavailable,
    )


def _to_process(process: object) -> GpuProcess:
    used = getattr(process, "usedGpuMemory", None)
    pid = int(getattr(process, "pid", 0))
    return GpuProcess(pid=pid, used_memory_bytes=None if used is None else int(used))


@dataclass(slots=True)
class _MigReading:
    """Filled while the slots are read, hence not frozen."""

    enabled: bool
    instances: list[GpuSample] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def _read_mig_instances(nvml: ModuleType, handle: object, gpu: GpuSample) -> _MigReading:
    """The GPU's MIG instances; what could not be read is reported on the parent GPU (`mig_mode`,
    `mig_instances`), so that an instance never disappears without a trace."""
    try:
        current_mode, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError as error:
        # NotSupported on pre-Ampere boards: simply no MIG. Anything else is worth saying.
        if getattr(error, "value", None) == nvml.NVML_ERROR_NOT_SUPPORTED:
            return _MigReading(enabled=False)
        return _MigReading(enabled=False, unavailable={"mig_mode": _error_name(error)})
    if current_mode != _MIG_ENABLED:
        return _MigReading(enabled=False)
    reading = _MigReading(enabled=True)
    try:
        slots = nvml.nvmlDeviceGetMaxMigDeviceCount(handle)
    except nvml.NVMLError as error:
        reading.unavailable["mig_instances"] = _error_name(error)
        return reading
    empty_slot = {nvml.NVML_ERROR_NOT_FOUND, nvml.NVML_ERROR_INVALID_ARGUMENT}
    seen: set[int] = set()
    for slot in range(slots):
        try:
            mig_handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError as error:
            if getattr(error, "value", None) not in empty_slot:
                reading.unavailable["mig_instances"] = _error_name(error)
            continue
        fields = _FieldReader(nvml)
        instance_id = fields.read("gpu_instance_id", lambda h=mig_handle: nvml.nvmlDeviceGetGpuInstanceId(h))
        if instance_id is None:
            # Without its instance id the sample cannot be told apart from the whole GPU's series.
            reading.unavailable["mig_instances"] = fields.unavailable.get("gpu_instance_id", "Unknown")
            continue
        if instance_id in seen:
            # A second compute instance of the same GPU instance: NVML lists each as a device, but
            # they share the instance's memory and DCGM's labels, so one series stands for both.
            continue
        seen.add(instance_id)
        reading.instances.append(
            _read_device(
                nvml,
                mig_handle,
                gpu.index,
                fields,
                gpu_instance_id=instance_id,
                parent_uuid=gpu.uuid,
            )
        )
    return reading
