"""A contract server for the few Kubernetes API endpoints the sidecar uses, over real HTTP.

No kube-apiserver can be installed here, so kubernetes_client.py is tested against this aiohttp
app instead: kubernetes-asyncio builds the same requests it would send to a cluster, and this
server answers with the shapes and status codes of the published API (Kubernetes API reference,
v1.30) for exactly these endpoints:

- GET  /apis/apps/v1/namespaces/{ns}/deployments/{name}, .../statefulsets/{name}
- GET  /api/v1/namespaces/{ns}/pods?watch=true&labelSelector=...  (newline-delimited watch events)
- GET, POST, PUT  /apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]
  (PUT with a stale metadata.resourceVersion answers 409 Conflict, as the API server does)
- GET, PATCH  /apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}
- GET, PATCH  /apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/{name}

What it does not model: authentication, field selectors, bookmarks, 410 Gone on old
resourceVersions, server-side apply. It records every request so tests can assert on them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


def status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


class KubernetesContract:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.pod_events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
        self.watch_selectors: list[str] = []
        self.authorizations: list[str | None] = []
        self._version = 0
        self.down = False
        self.dropping = False  # close every connection unanswered, as a restarting API server does
        self.silent = False  # accept requests and answer none until `answer_again` is set
        self.answer_again = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/apis/apps/v1/namespaces/{ns}/{kind}/{name}", self.get)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self.watch_pods)
        base = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        app.router.add_get(base + "/{name}", self.get_lease)
        app.router.add_post(base, self.create_lease)
        app.router.add_put(base + "/{name}", self.replace_lease)
        for prefix, kind in (
            ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
            ("/apis/keda.sh/v1alpha1", "scaledobjects"),
        ):
            app.router.add_get(f"{prefix}/namespaces/{{ns}}/{kind}/{{name}}", self.get)
            app.router.add_patch(f"{prefix}/namespaces/{{ns}}/{kind}/{{name}}", self.patch)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.content_type))
        self.authorizations.append(request.headers.get("Authorization"))
        if self.down:
            return status(503, "ServiceUnavailable", "the API server is unavailable")
        if self.dropping and request.transport is not None:
            request.transport.close()
        if self.silent:
            await self.answer_again.wait()
        return await handler(request)

    def next_version(self) -> str:
        self._version += 1
        return str(self._version)

    # Fixtures a test puts in place.
    def add_deployment(
        self, ns: str, name: str, replicas: int, ready: int | None, labels: dict[str, str]
    ) -> None:
        status_block = {"replicas": replicas} | ({"readyReplicas": ready} if ready else {})
        self.objects[("deployments", ns, name)] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": self.next_version()},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {}},
            "status": status_block,
        }

    def add_hpa(self, ns: str, name: str, min_replicas: int) -> None:
        self.objects[("horizontalpodautoscalers", ns, name)] = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": self.next_version()},
            "spec": {
                "minReplicas": min_replicas,
                "maxReplicas": 20,
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            },
        }

    def add_scaled_object(self, ns: str, name: str, min_count: int) -> None:
        self.objects[("scaledobjects", ns, name)] = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": self.next_version()},
            "spec": {"minReplicaCount": min_count, "scaleTargetRef": {"name": name}},
        }

    async def get(self, request: web.Request) -> web.Response:
        kind = request.path.split("/")[-2]
        key = (kind, request.match_info["ns"], request.match_info["name"])
        if key not in self.objects:
            return status(404, "NotFound", f'{kind} "{key[2]}" not found')
        return web.json_response(self.objects[key])

    async def patch(self, request: web.Request) -> web.Response:
        kind = request.path.split("/")[-2]
        key = (kind, request.match_info["ns"], request.match_info["name"])
        if key not in self.objects:
            return status(404, "NotFound", f'{kind} "{key[2]}" not found')
        # Custom resources (ScaledObject) do not support strategic merge patch; built-ins do.
        allowed = {"application/merge-patch+json"}
        if kind != "scaledobjects":
            allowed.add("application/strategic-merge-patch+json")
        if request.content_type not in allowed:
            return status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {request.content_type}",
            )
        merge(self.objects[key], await request.json())
        self.objects[key]["metadata"]["resourceVersion"] = self.next_version()
        return web.json_response(self.objects[key])

    async def watch_pods(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") not in ("true", "1", "True"):
            return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
        self.watch_selectors.append(request.query.get("labelSelector", ""))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        while (event := await self.pod_events.get()) is not None:
            await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response

    async def get_lease(self, request: web.Request) -> web.Response:
        return await self.get(request)

    async def create_lease(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = ("leases", request.match_info["ns"], body["metadata"]["name"])
        if key in self.objects:
            return status(409, "AlreadyExists", f'leases "{key[2]}" already exists')
        body["metadata"]["resourceVersion"] = self.next_version()
        body.setdefault("apiVersion", "coordination.k8s.io/v1")
        body.setdefault("kind", "Lease")
        self.objects[key] = body
        return web.json_response(body, status=201)

    async def replace_lease(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = ("leases", request.match_info["ns"], request.match_info["name"])
        current = self.objects.get(key)
        if current is None:
            return status(404, "NotFound", f'leases "{key[2]}" not found')
        if body.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return status(
                409, "Conflict", "the object has been modified; please apply your changes to the latest"
            )
        body["metadata"]["resourceVersion"] = self.next_version()
        self.objects[key] = body
        return web.json_response(body)


def pod_event(
    kind: str, uid: str, created: str, ready_at: str | None, restarts: int = 0, labels: dict | None = None
) -> dict:
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}] if ready_at else []
    return {
        "type": kind,
        "object": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"pod-{uid}",
                "uid": uid,
                "creationTimestamp": created,
                "labels": labels or {},
            },
            "status": {
                "conditions": conditions,
                "containerStatuses": [
                    {
                        "name": "server",
                        "image": "triton",
                        "imageID": "sha",
                        "ready": bool(ready_at),
                        "restartCount": restarts,
                    }
                ],
            },
        },
    }
