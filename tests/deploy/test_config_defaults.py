"""The deploy/ settings equal the code's: the ConfigMap repeats sidecar/settings.py defaults, the
Deployment's environment overrides load as valid settings, and ports, probes and the agent's flags
match what the code serves."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_agent import settings as agent_settings
from sidecar.settings import ENV_PREFIX, Settings, WorkloadSettings, parse_settings
from tests.deploy.conftest import find

# fieldRef values the kubelet fills in; a sample value stands in for each.
FIELD_REF_SAMPLES = {
    "metadata.namespace": "predictive-autoscaler",
    "metadata.name": "predictive-autoscaler-0",
}


@pytest.fixture(autouse=True)
def _no_ambient_overrides(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _config_text(objects: list[dict[str, Any]]) -> str:
    return find(objects, "ConfigMap", "predictive-autoscaler-config")["data"]["config.yaml"]


def _sidecar_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(objects, "Deployment", "predictive-autoscaler")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_configmap_settings_equal_the_code_defaults(base_objects):
    deployed = parse_settings(_config_text(base_objects)).model_dump(exclude={"workloads"})
    assert deployed == Settings().model_dump(exclude={"workloads"})


def test_example_workload_repeats_every_code_default_it_shows(base_objects):
    # The sidecar rejects a model name its registry lacks, so the example must use a known one.
    settings = parse_settings(_config_text(base_objects))
    assert settings.workloads
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in WorkloadSettings.model_fields.items()
        if not field.is_required()
    }
    for workload in settings.workloads:
        shown = workload.model_dump(exclude_unset=True)
        for name, value in shown.items():
            default = defaults.get(name)
            if name in defaults and default is not None and name != "namespace":
                dumped_default = default.model_dump() if hasattr(default, "model_dump") else default
                assert value == dumped_default, f"{workload.name}.{name}: {value!r} != code default"


def test_deployment_environment_overrides_load(base_objects, monkeypatch):
    container = _sidecar_container(base_objects)
    for variable in container["env"]:
        if "value" in variable:
            monkeypatch.setenv(variable["name"], variable["value"])
        else:
            monkeypatch.setenv(
                variable["name"], FIELD_REF_SAMPLES[variable["valueFrom"]["fieldRef"]["fieldPath"]]
            )
    settings = parse_settings(_config_text(base_objects))
    assert settings.prometheus.url.startswith("http://prometheus")
    assert settings.server.tls_cert_file and settings.server.tls_key_file
    assert settings.server.requestheader_allowed_names == ("front-proxy-client",)
    assert settings.kubernetes.lease_namespace == "predictive-autoscaler"
    # The files the overrides name are mounted where they point.
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for path in (settings.server.tls_cert_file, settings.server.client_ca_file):
        assert any(path.startswith(mount + "/") for mount in mounts), path


def test_container_ports_and_probes_match_the_server_settings(base_objects):
    container = _sidecar_container(base_objects)
    server = Settings().server
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": server.health_port, "https": server.http_port, "grpc": server.grpc_port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["args"][:2] == ["serve", "--config"]
    config_path = container["args"][2]
    assert any(config_path.startswith(m["mountPath"] + "/") for m in container["volumeMounts"])


def test_gpu_agent_environment_equals_the_agent_defaults(base_objects):
    daemonset = find(base_objects, "DaemonSet", "gpu-agent")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GPU_AGENT_LISTEN"] == agent_settings.DEFAULT_LISTEN
    assert float(env["GPU_AGENT_INTERVAL_SECONDS"]) == agent_settings.DEFAULT_INTERVAL_SECONDS
    assert env["GPU_AGENT_POD_RESOURCES_SOCKET"] == agent_settings.DEFAULT_POD_RESOURCES_SOCKET
    assert "NODE_NAME" in env
