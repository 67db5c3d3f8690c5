"""Fixtures shared by the sidecar's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from kubernetes_asyncio import client

from tests.conftest import free_port
from tests.sidecar.kubernetes_contract import KubernetesContract


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[KubernetesContract, client.ApiClient]]:
    """The Kubernetes contract server on a loopback port and a kubernetes-asyncio client for it."""
    contract = KubernetesContract()
    runner = web.AppRunner(contract.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api = client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}"))
    yield contract, api
    contract.answer_again.set()
    await contract.pod_events.put(None)
    await api.close()
    await runner.cleanup()
