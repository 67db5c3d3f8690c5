"""read_gpus against the real nvidia-ml-py binding loaded over our fake libnvidia-ml.so.1.

The fake (tests/gpu_agent/fake_nvml/fake_nvml.c, built by conftest.py) pretends to be a node with
an H100, a MIG-enabled A100 with two GPU instances and an L4 without power readings; environment
variables read at call time make GPUs lost. The binding's ctypes signatures, struct layouts and
error classes therefore run for real; what the fake cannot prove is that a driver returns these
values, which needs a GPU machine.
"""

from __future__ import annotations

import pynvml
import pytest

from gpu_agent.nvml_reader import GpuProcess, GpuSample, read_driver_version, read_gpus

GIB = 1024**3
H100 = "GPU-11111111-2222-3333-4444-555555555555"
A100 = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
A100_GI1 = "MIG-0f0f0f0f-1111-2222-3333-444444444444"


def _sample(samples: list[GpuSample], index: int, gpu_instance_id: int | None = None) -> GpuSample:
    (match,) = [s for s in samples if s.index == index and s.gpu_instance_id == gpu_instance_id]
    return match


def _read(nvml, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> list[GpuSample]:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    nvml.nvmlInit()
    return read_gpus(nvml)


@pytest.mark.parametrize(
    ("environment", "index", "gpu_instance_id", "expected"),
    [
        pytest.param(
            {},
            0,
            None,
            {
                "uuid": H100,
                "model_name": "NVIDIA H100 80GB HBM3",
                "utilization_percent": 63,
                "memory_copy_utilization_percent": 20,
                "memory_used_bytes": 10 * GIB,
                "memory_free_bytes": 70 * GIB,
                "memory_total_bytes": 80 * GIB,
                "power_watts": 312.5,
                "temperature_celsius": 54.0,
                "sm_clock_megahertz": 1755,
                "encoder_utilization_percent": 0,
                "decoder_utilization_percent": 5,
                "processes": (GpuProcess(1234, 4 * GIB), GpuProcess(5678, 6 * GIB)),
                "unavailable": {},
            },
            id="whole GPU reads every field, power converted from milliwatts",
        ),
        pytest.param(
            {},
            2,
            None,
            {"power_watts": None, "temperature_celsius": 35.0, "unavailable": {"power": "NotSupported"}},
            id="NotSupported power is dropped with its reason, never exported as 0",
        ),
        pytest.param(
            {},
            1,
            None,
            {
                "utilization_percent": None,
                "encoder_utilization_percent": None,
                "memory_used_bytes": 15 * GIB,
                "unavailable": {"utilization": "NotSupported", "encoder_utilization": "NotSupported"},
            },
            id="MIG parent keeps memory and power but has no utilization",
        ),
        pytest.param(
            {},
            1,
            1,
            {
                "uuid": A100_GI1,
                "parent_uuid": A100,
                "memory_used_bytes": 3 * GIB,
                "memory_total_bytes": 5 * GIB,
                "utilization_percent": None,
                "power_watts": None,
                "processes": (GpuProcess(4321, 2 * GIB),),
            },
            id="MIG instance reads its own memory and processes under its MIG UUID",
        ),
        pytest.param(
            {"FAKE_NVML_LOST": "2"},
            2,
            None,
            {"uuid": None, "memory_used_bytes": None, "unavailable": {"device": "GpuIsLost"}},
            id="lost GPU keeps its index and drops every field under one device entry",
        ),
        pytest.param(
            {"FAKE_NVML_LOST": "2"},
            0,
            None,
            {"utilization_percent": 63, "unavailable": {}},
            id="a lost GPU does not hide the others",
        ),
    ],
)
def test_read_gpus_fields(nvml, monkeypatch, environment, index, gpu_instance_id, expected):
    sample = _sample(_read(nvml, monkeypatch, environment), index, gpu_instance_id)
    actual = {name: getattr(sample, name) for name in expected}
    assert actual == expected


@pytest.mark.parametrize(
    ("environment", "expected_devices"),
    [
        pytest.param({}, [(0, None), (1, None), (1, 1), (1, 5), (2, None)], id="empty MIG slot 1 is skipped"),
        pytest.param(
            {"FAKE_NVML_LOST": "1"},
            [(0, None), (1, None), (2, None)],
            id="lost MIG parent lists no instances",
        ),
        pytest.param(
            {"FAKE_NVML_SECOND_CI": "1"},
            [(0, None), (1, None), (1, 1), (1, 5), (2, None)],
            id="a second compute instance of one GPU instance is one device",
        ),
        pytest.param({"FAKE_NVML_GPUS": "1"}, [(0, None)], id="only enumerated GPUs are read"),
        pytest.param({"FAKE_NVML_GPUS": "0"}, [], id="a node without GPUs reads as empty"),
    ],
)
def test_read_gpus_devices(nvml, monkeypatch, environment, expected_devices):
    samples = _read(nvml, monkeypatch, environment)
    assert [(s.index, s.gpu_instance_id) for s in samples] == expected_devices


def test_a_name_that_is_not_utf8_costs_that_field_only(nvml, monkeypatch):
    sample = _sample(_read(nvml, monkeypatch, {"FAKE_NVML_BAD_NAME": "1"}), 0)
    assert sample.model_name is None and sample.unavailable == {"model_name": "UnicodeDecodeError"}
    assert sample.utilization_percent == 63


def test_unreadable_mig_instances_are_reported_on_their_parent(nvml, monkeypatch):
    samples = _read(nvml, monkeypatch, {"FAKE_NVML_GI_ID_RESULT": "999"})
    assert [(s.index, s.gpu_instance_id) for s in samples] == [(0, None), (1, None), (2, None)]
    parent = _sample(samples, 1)
    assert parent.mig_enabled and parent.unavailable["mig_instances"] == "Unknown"


def test_uninitialised_nvml_raises_for_the_caller_to_report_down(nvml):
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        read_gpus(nvml)


def test_old_driver_without_v3_process_symbol_drops_only_processes(old_driver_nvml):
    old_driver_nvml.nvmlInit()
    sample = _sample(read_gpus(old_driver_nvml), 0)
    # The binding raises NVMLLibraryMismatchError, a plain Exception, for the missing _v3 symbol.
    assert (sample.processes, sample.unavailable) == (None, {"processes": "NVMLLibraryMismatchError"})
    assert sample.utilization_percent == 63


@pytest.mark.parametrize(
    ("initialise", "expected"),
    [
        pytest.param(True, "550.54.15", id="driver version comes from NVML"),
        pytest.param(False, None, id="driver version is missing, not empty, when NVML is down"),
    ],
)
def test_read_driver_version(nvml, initialise, expected):
    if initialise:
        nvml.nvmlInit()
    assert read_driver_version(nvml) == expected
