"""Attributes GPUs to pods through the kubelet pod-resources API (`v1.PodResourcesLister/List`).

The kubelet serves it on a node-local Unix socket; the device plugin's device ids are GPU UUIDs
(`GPU-…`), MIG UUIDs (`MIG-…`) or GKE's device names (`nvidia0`, MIG `nvidia1/gi2`), optionally
with a time-sharing replica suffix (`GPU-…::2`, GKE `nvidia0/vgpu1`). The result maps each device
id, suffix removed, to the containers holding it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from gpu_agent import podresources_pb2, podresources_pb2_grpc

GPU_RESOURCE_NAME = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

# Time-slicing and MPS sharing advertise one GPU several times as `<id>::<replica>` (GKE:
# `<id>/vgpu<replica>`).
_REPLICA_SUFFIX = re.compile(r"(::\d+|/vgpu\d+)$")


@dataclass(frozen=True, slots=True, order=True)
class PodRef:
    """The container a GPU is allocated to."""

    namespace: str
    pod: str
    container: str


class PodResourcesError(Exception):
    """The pod-resources API could not be read; the message says where and why."""


def is_gpu_resource(resource_name: str) -> bool:
    return resource_name == GPU_RESOURCE_NAME or resource_name.startswith(MIG_RESOURCE_PREFIX)


def attribute_devices(response: podresources_pb2.ListPodResourcesResponse) -> dict[str, tuple[PodRef, ...]]:
    """Device id -> containers holding it, sorted; non-GPU resources (CPUs, NICs…) are ignored."""
    holders: dict[str, set[PodRef]] = {}
    for pod in response.pod_resources:
        for container in pod.containers:
            for devices in container.devices:
                if not is_gpu_resource(devices.resource_name):
                    continue
                for device_id in devices.device_ids:
                    key = _REPLICA_SUFFIX.sub("", device_id)
                    holders.setdefault(key, set()).add(PodRef(pod.namespace, pod.name, container.name))
    return {device_id: tuple(sorted(refs)) for device_id, refs in holders.items()}


class PodResourcesClient:
    """Lists GPU allocations over the kubelet socket, one short-lived channel per call.

    A channel per call costs a Unix-socket connect (sub-millisecond) every sampling interval and
    survives kubelet restarts, which recreate the socket file, without reconnect logic.
    """

    def __init__(self, socket_path: Path, timeout_seconds: float) -> None:
        self._socket_path = socket_path
        self._timeout_seconds = timeout_seconds

    async def list_gpu_devices(self) -> Mapping[str, tuple[PodRef, ...]]:
        """Raises PodResourcesError when the socket is absent or the call fails."""
        try:
            is_socket = self._socket_path.is_socket()
        except OSError as error:  # a name too long, a directory the agent may not enter
            raise PodResourcesError(f"pod-resources socket {self._socket_path}: {error.strerror}") from error
        if not is_socket:
            raise PodResourcesError(f"pod-resources socket {self._socket_path} is missing or not a socket")
        async with grpc.aio.insecure_channel(f"unix:{self._socket_path}") as channel:
            stub = podresources_pb2_grpc.PodResourcesListerStub(channel)
            try:
                response = await stub.List(
                    podresources_pb2.ListPodResourcesRequest(), timeout=self._timeout_seconds
                )
            except grpc.aio.AioRpcError as error:
                reason = f"{self._socket_path}: {error.code().name}: {error.details()}"
                raise PodResourcesError(f"pod-resources List failed on {reason}") from error
        return attribute_devices(response)
