"""The rendered manifests (the Kustomize base, external-metrics and the HPA and KEDA examples):
built-in kinds validate strictly against the Kubernetes OpenAPI schema (kubernetes-validate);
custom kinds against their published CRD schemas (tests/deploy/crd_schemas, see its README):
ServiceMonitor and PrometheusRule from Prometheus Operator v0.90.1, ScaledObject and
TriggerAuthentication from KEDA v2.10.1 (the oldest 2.x schema packaged; up to v2.20.2 no field
it has became required), and beyond the schemas the fields the operators need of ours."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from metrics_adapter.published_metrics import PUBLISHED_METRICS
from sidecar.prometheus_reader import render_query
from sidecar.settings import load_settings
from tests.deploy.conftest import EXAMPLES, REPO, find, is_custom

KUBERNETES_VERSION = kubernetes_validate.latest_version()


def test_every_builtin_object_validates_strictly(external_metrics_objects, example_objects):
    builtin = [o for o in external_metrics_objects + example_objects if not is_custom(o)]
    assert len(builtin) >= 20
    for obj in builtin:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_every_custom_object_validates_against_its_published_crd(
    base_objects, external_metrics_objects, example_objects, crd_validator
):
    # Every example file too, also those no kustomization lists (the mTLS TriggerAuthentication).
    files = [yaml.safe_load_all(path.read_text()) for path in sorted(EXAMPLES.rglob("*.yaml"))]
    examples = [doc for docs in files for doc in docs if isinstance(doc, dict) and "apiVersion" in doc]
    rendered = base_objects + external_metrics_objects + example_objects
    custom = [o for o in rendered + examples if is_custom(o)]
    assert "predictive-autoscaler-mtls" in {o["metadata"]["name"] for o in custom}
    assert {o["kind"] for o in custom} == {
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ScaledObject",
        "TriggerAuthentication",
    }
    assert crd_validator(custom) == {}


@pytest.mark.parametrize(
    ("kind", "name", "break_it", "named"),
    [
        pytest.param(
            "ScaledObject",
            "llama",
            lambda o: o["spec"].pop("scaleTargetRef"),
            "/spec must have required property scaleTargetRef",
            id="ScaledObject without its target",
        ),
        pytest.param(
            "ServiceMonitor",
            "predictive-autoscaler",
            lambda o: o["spec"]["endpoints"][0].update(interval="15 seconds"),
            "/spec/endpoints/0/interval must match pattern",
            id="ServiceMonitor interval not a duration",
        ),
        pytest.param(
            "TriggerAuthentication",
            "predictive-autoscaler-ca",
            lambda o: o["spec"]["secretTargetRef"][0].pop("key"),
            "/spec/secretTargetRef/0 must have required property key",
            id="secret reference without its key",
        ),
    ],
)
def test_the_crd_schemas_refuse_a_broken_object(
    base_objects, example_objects, crd_validator, kind, name, break_it, named
):
    # Guards the test above: a broken custom object must fail, not pass silently.
    broken = copy.deepcopy(find(base_objects + example_objects, kind, name))
    break_it(broken)
    (errors,) = crd_validator([broken]).values()
    assert any(error.startswith(named) for error in errors), errors


def test_strict_validation_rejects_a_misspelt_field(base_objects):
    # Guards the test above: a typo must fail, not pass silently.
    deployment = find(base_objects, "Deployment", "predictive-autoscaler")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_sidecar_deployment_is_hardened_and_highly_available(base_objects):
    deployment = find(base_objects, "Deployment", "predictive-autoscaler")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= container["resources"].keys()
    assert {"livenessProbe", "readinessProbe", "startupProbe"} <= container.keys()
    pdb = find(base_objects, "PodDisruptionBudget", "predictive-autoscaler")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_apiservice_points_at_the_sidecar_service_with_a_ca_bundle(base_objects, external_metrics_objects):
    # A cluster holds one external metrics APIService (KEDA's or prometheus-adapter's may be it):
    # the base leaves it out, deploy/external-metrics adds it to everything else in the base.
    assert not [o for o in base_objects if o["kind"] == "APIService"]
    others = [o for o in external_metrics_objects if o["kind"] != "APIService"]
    assert sorted(map(str, others)) == sorted(map(str, base_objects))
    api = find(external_metrics_objects, "APIService", "v1beta1.external.metrics.k8s.io")
    service = find(external_metrics_objects, "Service", api["spec"]["service"]["name"])
    assert api["spec"]["service"]["namespace"] == service["metadata"]["namespace"]
    assert api["spec"]["service"]["port"] in {p["port"] for p in service["spec"]["ports"]}
    assert api["spec"]["caBundle"]
    assert "insecureSkipTLSVerify" not in api["spec"]


def test_rbac_delegates_auth_and_reads_the_front_proxy_ca_from_kube_system(base_objects):
    delegator = find(base_objects, "ClusterRoleBinding", "predictive-autoscaler:system:auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    reader = find(base_objects, "RoleBinding", "predictive-autoscaler-auth-reader")
    # The Role and its ConfigMap live in kube-system, so a binding anywhere else grants nothing.
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "extension-apiserver-authentication-reader",
    }
    hpa = find(base_objects, "ClusterRoleBinding", "predictive-autoscaler:hpa-external-metrics-reader")
    assert hpa["subjects"] == [
        {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}
    ]


def test_sidecar_role_grants_no_writes_beyond_autoscaler_patches(base_objects):
    role = find(base_objects, "ClusterRole", "predictive-autoscaler")
    writes = {"create", "update", "patch", "delete", "deletecollection", "*"}
    for rule in role["rules"]:
        if writes & set(rule["verbs"]):
            assert set(rule["resources"]) <= {"horizontalpodautoscalers", "scaledobjects"}, rule
            assert set(rule["verbs"]) & writes == {"patch"}, rule


def test_gpu_agent_daemonset_mounts_pod_resources_on_gpu_nodes_only(base_objects):
    daemonset = find(base_objects, "DaemonSet", "gpu-agent")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    socket_dir = env["GPU_AGENT_POD_RESOURCES_SOCKET"].rsplit("/", 1)[0]
    (mount,) = (m for m in container["volumeMounts"] if m["mountPath"] == socket_dir)
    assert mount["readOnly"] is True
    (volume,) = (v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["hostPath"]["path"] == socket_dir
    port = env["GPU_AGENT_LISTEN"].rsplit(":", 1)[1]
    assert int(port) in {p["containerPort"] for p in container["ports"]}


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        pytest.param("ServiceMonitor", "predictive-autoscaler", id="sidecar scrape config"),
        pytest.param("ServiceMonitor", "gpu-agent", id="gpu agent scrape config"),
    ],
)
def test_service_monitor_selects_a_service_port_that_exists(base_objects, kind, name):
    monitor = find(base_objects, kind, name)
    service = find(base_objects, "Service", name)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        # Our series carry the workload's namespace and pod; the target's must not replace them.
        assert endpoint["honorLabels"] is True


def test_prometheus_rule_has_the_operators_required_fields(base_objects):
    rule = find(base_objects, "PrometheusRule", "predictive-autoscaler")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item), item
            assert isinstance(item["expr"], str) and item["expr"]
            assert set(item) <= {"alert", "record", "expr", "for", "labels", "annotations"}, item


def test_dashboard_is_provisioned_for_grafanas_sidecar(base_objects):
    config_map = find(base_objects, "ConfigMap", "predictive-autoscaler-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "predictive-autoscaler.json" in config_map["data"]


def test_hpa_reads_desired_replicas_at_one_per_replica(example_objects):
    hpa = find(example_objects, "HorizontalPodAutoscaler", "llama")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] in PUBLISHED_METRICS
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    # The sidecar already stabilizes; the HPA must not delay a pre-warm jump.
    assert hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_scaled_object_uses_both_triggers_with_fallback(base_objects, example_objects):
    scaled = find(example_objects, "ScaledObject", "llama")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"]
    assert scaled["spec"]["fallback"]["failureThreshold"] >= 1
    assert scaled["spec"]["fallback"]["replicas"] >= 1
    service = find(base_objects, "Service", "predictive-autoscaler")
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    expected_address = f"predictive-autoscaler.predictive-autoscaler.svc:{grpc_port}"
    types = []
    for trigger in scaled["spec"]["triggers"]:
        types.append(trigger["type"])
        assert trigger["metadata"]["scalerAddress"] == expected_address
        assert trigger["metadata"]["workload"] == scaled["metadata"]["name"]
        # KEDA applies fallback only to AverageValue triggers.
        assert trigger["metricType"] == "AverageValue"
        # The base serves gRPC over TLS (deployment.yaml's serving certificate): KEDA must too,
        # verifying it with the CA its TriggerAuthentication supplies.
        assert trigger["metadata"]["enableTLS"] == "true"
        auth = find(example_objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        assert auth["metadata"]["namespace"] == scaled["metadata"]["namespace"]
        assert [ref["parameter"] for ref in auth["spec"]["secretTargetRef"]] == ["caCert"]
    assert types == ["external", "external-push"]


def test_install_guide_names_every_object_kustomize_creates(external_metrics_objects):
    guide = (REPO / "deploy" / "README.md").read_text(encoding="utf-8")
    for obj in external_metrics_objects:
        assert f"`{obj['metadata']['name']}`" in guide, f"deploy/README.md does not name {obj['kind']}"


def test_the_vllm_example_is_a_whole_workload(example_objects):
    """Deployment, PodMonitor and HPA agree with each other and with the example's settings: the
    sidecar's workload is the Deployment, its preset's selector picks the Deployment's pods, the
    scrape reaches the engine's port, and the HPA follows desired_replicas within the same bounds."""
    (workload,) = load_settings(EXAMPLES / "vllm" / "settings.yaml").workloads
    assert workload.preset == "vllm" and workload.replica_capacity_rps is None
    deployment = find(example_objects, "Deployment", workload.target_name)
    assert deployment["metadata"]["namespace"] == workload.namespace
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["http"])
    monitor = find(example_objects, "PodMonitor", deployment["metadata"]["name"])
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["http"]
    # Deployment pods are named <deployment>-<replicaset hash>-<suffix>: the preset's pod matcher.
    load = render_query(workload.queries.load, {"namespace": workload.namespace, "workload": workload.name})
    assert f'pod=~"{deployment["metadata"]["name"]}-.*"' in load
    hpa = find(example_objects, "HorizontalPodAutoscaler", workload.name)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": workload.name,
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] in PUBLISHED_METRICS
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"workload": workload.name}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
        workload.min_replicas,
        workload.max_replicas,
    )
    assert workload.prewarm is not None and workload.prewarm.name == hpa["metadata"]["name"]


def test_the_mutual_tls_trigger_authentication_example_fits_the_scaled_object(example_objects):
    """deploy/examples/keda/triggerauthentication-mtls.yaml (optional, outside the kustomization;
    its shape is checked against the CRD above), read as shipped: KEDA's external scalers take mutual TLS
    from the parameters caCert, tlsClientCert and tlsClientKey; all three must come from the one
    Secret its comment tells the operator to create, under the keys that command writes, in the
    ScaledObject's namespace."""
    (auth,) = list(yaml.safe_load_all((EXAMPLES / "keda" / "triggerauthentication-mtls.yaml").read_text()))
    assert (auth["apiVersion"], auth["kind"]) == ("keda.sh/v1alpha1", "TriggerAuthentication")
    scaled = find(example_objects, "ScaledObject", "llama")
    assert auth["metadata"]["namespace"] == scaled["metadata"]["namespace"]
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"caCert", "tlsClientCert", "tlsClientKey"}
    (secret,) = {ref["name"] for ref in refs.values()}
    assert {name: ref["key"] for name, ref in refs.items()} == {
        "caCert": "ca.crt",
        "tlsClientCert": "tls.crt",
        "tlsClientKey": "tls.key",
    }
    comment = (EXAMPLES / "keda" / "triggerauthentication-mtls.yaml").read_text()
    command = f"kubectl -n {auth['metadata']['namespace']} create secret generic {secret}"
    assert command in comment
    assert all(f"--from-file={key}" in comment for key in ("ca.crt", "tls.crt=", "tls.key="))
    # Swapping it in is a one-line change to the triggers: a name, not a different shape.
    assert all(t["authenticationRef"].keys() == {"name"} for t in scaled["spec"]["triggers"])
