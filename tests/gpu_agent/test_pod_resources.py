"""Pod attribution: the pure device mapping, and the client against a real gRPC pod-resources server
on a Unix socket (the kubelet's transport), speaking the published `v1.PodResourcesLister` contract
from gpu_agent/podresources.proto."""

from __future__ import annotations

import grpc
import pytest

from gpu_agent import podresources_pb2 as pb
from gpu_agent.pod_resources import PodRef, PodResourcesClient, PodResourcesError, attribute_devices

GPU = "GPU-11111111-2222-3333-4444-555555555555"
MIG = "MIG-0f0f0f0f-1111-2222-3333-444444444444"


def _pod(namespace: str, name: str, *containers: tuple[str, list[tuple[str, list[str]]]]) -> pb.PodResources:
    return pb.PodResources(
        name=name,
        namespace=namespace,
        containers=[
            pb.ContainerResources(
                name=container,
                devices=[pb.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in devices],
            )
            for container, devices in containers
        ],
    )


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param(
            [_pod("ml", "triton-0", ("server", [("nvidia.com/gpu", [GPU])]))],
            {GPU: (PodRef("ml", "triton-0", "server"),)},
            id="whole GPU by UUID",
        ),
        pytest.param(
            [_pod("ml", "vllm-0", ("engine", [("nvidia.com/mig-1g.5gb", [MIG])]))],
            {MIG: (PodRef("ml", "vllm-0", "engine"),)},
            id="MIG device by MIG UUID",
        ),
        pytest.param(
            [_pod("ml", "web-0", ("nic", [("example.com/sriov", ["0000:3b:00.0"]), ("cpu", ["1"])]))],
            {},
            id="non-GPU resources are ignored",
        ),
        pytest.param(
            [
                _pod("ml", "b-0", ("c", [("nvidia.com/gpu", [f"{GPU}::1"])])),
                _pod("ml", "a-0", ("c", [("nvidia.com/gpu", [f"{GPU}::0"])])),
            ],
            {GPU: (PodRef("ml", "a-0", "c"), PodRef("ml", "b-0", "c"))},
            id="time-shared replicas collapse onto the GPU, holders sorted",
        ),
        pytest.param(
            [_pod("ml", "gke-0", ("c", [("nvidia.com/gpu", ["nvidia0", "nvidia1"])]))],
            {"nvidia0": (PodRef("ml", "gke-0", "c"),), "nvidia1": (PodRef("ml", "gke-0", "c"),)},
            id="device-name ids are kept as given",
        ),
        pytest.param(
            [_pod("ml", "gke-1", ("c", [("nvidia.com/gpu", ["nvidia0/vgpu1", "nvidia1/gi2/vgpu0"])]))],
            {"nvidia0": (PodRef("ml", "gke-1", "c"),), "nvidia1/gi2": (PodRef("ml", "gke-1", "c"),)},
            id="GKE time-sharing suffixes collapse onto the GPU or its MIG instance",
        ),
        pytest.param(
            [_pod("ml", "p", ("c", [("nvidia.com/gpu", [GPU]), ("nvidia.com/gpu", [GPU])]))],
            {GPU: (PodRef("ml", "p", "c"),)},
            id="a device listed twice for one container is one holder",
        ),
    ],
)
def test_attribute_devices(pods, expected):
    assert attribute_devices(pb.ListPodResourcesResponse(pod_resources=pods)) == expected


@pytest.mark.integration
async def test_client_lists_gpu_holders_over_the_socket(kubelet, socket_path):
    kubelet.response = pb.ListPodResourcesResponse(
        pod_resources=[
            _pod("ml", "triton-0", ("server", [("nvidia.com/gpu", [GPU])])),
            _pod("ml", "vllm-0", ("engine", [("nvidia.com/mig-1g.5gb", [MIG])])),
        ]
    )
    devices = await PodResourcesClient(socket_path, timeout_seconds=2.0).list_gpu_devices()
    assert devices == {
        GPU: (PodRef("ml", "triton-0", "server"),),
        MIG: (PodRef("ml", "vllm-0", "engine"),),
    }


@pytest.mark.integration
async def test_client_reports_a_failing_kubelet_by_status(kubelet, socket_path):
    kubelet.failure = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(PodResourcesError, match="UNAVAILABLE: kubelet is restarting"):
        await PodResourcesClient(socket_path, timeout_seconds=2.0).list_gpu_devices()


@pytest.mark.integration
async def test_client_gives_up_on_a_stalled_kubelet_at_its_timeout(kubelet, socket_path):
    kubelet.delay_seconds = 1.0
    with pytest.raises(PodResourcesError, match="DEADLINE_EXCEEDED"):
        await PodResourcesClient(socket_path, timeout_seconds=0.1).list_gpu_devices()


async def test_a_socket_path_that_cannot_be_checked_is_a_pod_resources_error(tmp_path):
    too_long = tmp_path / ("x" * 300) / "kubelet.sock"
    with pytest.raises(PodResourcesError, match="File name too long"):
        await PodResourcesClient(too_long, timeout_seconds=2.0).list_gpu_devices()


async def test_client_names_a_missing_socket(socket_path):
    with pytest.raises(PodResourcesError, match=f"{socket_path} is missing or not a socket"):
        await PodResourcesClient(socket_path, timeout_seconds=2.0).list_gpu_devices()
