"""The composition root: process exit codes for bad settings (hostile ones included), kubeconfig
connection, and SIGTERM draining of a real process. Live reload: test_settings_watch.py."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from aiohttp import web

from sidecar.control_loop import ControlLoop, LoopPorts
from sidecar.kubernetes_client import KubernetesReader, connect
from sidecar.latest_decisions import LatestDecisions
from sidecar.settings import SettingsFile
from tests.conftest import eventually, free_port
from tests.fakes import FakeClock, FlatForecaster, ScriptedSignals, proportional_decide
from tests.sidecar.hostile_settings import alias_bomb, oversize
from tests.sidecar.kubernetes_contract import KubernetesContract

REPO = Path(__file__).resolve().parents[2]

SETTINGS = textwrap.dedent(
    """
    kubernetes: {enabled: false}
    server: {host: 127.0.0.1, health_port: 0, http_port: 0, grpc_port: 0}
    workloads:
      - name: llama
        namespace: ml
        queries: {load: 'sum(load_rps{workload="$workload"})'}
        replica_capacity_rps: 10
        max_replicas: 20
    """
)


def run_cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# The sidecar's text log line (sidecar/logs.py): every start-up error is written as one of these.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR [\w.]+ \S")


def one_log_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert LOG_LINE.match(lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("edited", "named"),
    [
        pytest.param("max_replicas: -4", "workloads[ml/llama].max_replicas=-4", id="a field out of range"),
        # Model names are checked against the registry at load, not left to fail every tick.
        pytest.param(
            "max_replicas: 20\n    forecast: {model: prophet}",
            "workloads[ml/llama].forecast.model='prophet' is not a known model",
            id="an unknown forecast model",
        ),
    ],
)
def test_bad_settings_exit_2_naming_the_field(tmp_path: Path, edited: str, named: str):
    path = tmp_path / "settings.yaml"
    path.write_text(SETTINGS.replace("max_replicas: 20", edited))
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 2
    assert named in result.stderr


def test_a_port_in_use_or_a_missing_file_at_start_exits_2_naming_it(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = tmp_path / "busy.yaml"
        busy.write_text(SETTINGS.replace("health_port: 0", f"health_port: {port}"))
        result = run_cli("serve", "--config", str(busy))
    assert result.returncode == 2, result.stderr
    assert f"cannot start the health server (server.health_port={port})" in result.stderr
    assert "Traceback" not in result.stderr

    no_tls = tmp_path / "no_tls.yaml"
    no_tls.write_text(
        SETTINGS.replace(
            "grpc_port: 0}", "grpc_port: 0, tls_cert_file: /absent/tls.crt, tls_key_file: /absent/tls.key}"
        )
    )
    result = run_cli("serve", "--config", str(no_tls))
    assert result.returncode == 2, result.stderr
    assert "cannot load the TLS files (server.tls_cert_file=/absent/tls.crt" in result.stderr


@pytest.mark.parametrize("speedup", ["nan", "inf", "0", "-3"])
def test_a_replay_speedup_that_is_not_a_positive_number_is_refused(speedup: str):
    result = run_cli("serve", "--replay", "--speedup", speedup)
    assert result.returncode == 2
    assert f"--speedup={float(speedup)} must be a finite number > 0" in one_log_line(result.stderr)


def _limited_memory() -> None:
    # A regression would expand the bomb: let it fail fast instead of taking the machine's memory.
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


@pytest.mark.parametrize(
    ("content", "named"),
    [
        pytest.param(alias_bomb(), "looks like an alias bomb", id="an alias bomb"),
        pytest.param(oversize(50), "over the 1,048,576-byte limit", id="a 50 MB file"),
    ],
)
def test_a_hostile_settings_file_at_start_exits_2_in_one_line(tmp_path: Path, content: str, named: str):
    """Findings 1 and 2 at start: once a MemoryError traceback after 35 s of CPU (exit 1), once no
    answer at all after 90 s. Now: exit 2 at once, one line naming the problem."""
    path = tmp_path / "settings.yaml"
    path.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=_limited_memory,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]


def test_no_workloads_exit_2(tmp_path: Path):
    path = tmp_path / "settings.yaml"
    path.write_text("kubernetes: {enabled: false}\n")
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 2
    line = one_log_line(result.stderr)
    # The file was given: the fix is in it, not another flag.
    assert f"{path} lists no workloads: add one under `workloads:`" in line
    assert "give --config" not in line


def test_an_empty_settings_file_names_itself(tmp_path: Path):
    path = tmp_path / "settings.yaml"
    path.write_text("")
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 2
    assert f"{path} lists no workloads: add one under `workloads:`" in one_log_line(result.stderr)


def test_bad_yaml_is_named_by_its_path_and_line(tmp_path: Path):
    path = tmp_path / "settings.yaml"
    path.write_text("loop:\n  tick_seconds: [1\n")
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 2
    line = one_log_line(result.stderr)
    assert f"{path}, line 3, column 1: not valid YAML" in line
    assert "<unicode string>" not in line


def test_no_cluster_names_the_missing_config_and_kubernetes_enabled_false(tmp_path: Path):
    # No service account (no KUBERNETES_SERVICE_HOST), no $KUBECONFIG and an empty home.
    path = tmp_path / "settings.yaml"
    path.write_text(SETTINGS.replace("kubernetes: {enabled: false}", "kubernetes: {enabled: true}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "PREDICTIVE_AUTOSCALER_"))}
    env["HOME"] = str(tmp_path)
    result = run_cli("serve", "--config", str(path), env=env)
    assert result.returncode == 2
    line = one_log_line(result.stderr)
    assert "no in-cluster service account and no kubeconfig at ~/.kube/config" in line
    assert "set kubernetes.enabled: false to run without a cluster" in line


def test_prometheus_unreachable_at_start_is_named_with_the_fix_at_the_first_tick(tmp_path: Path):
    """The first run against a wrong prometheus.url once logged only `decision none -> 1
    (held_stale)` for a minute. Now the first failed query logs one warning naming the URL, the
    refused connection and the setting to fix; the service keeps running (an outage is not bad
    input) and drains on SIGTERM."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    path = tmp_path / "settings.yaml"
    path.write_text(SETTINGS + f"prometheus: {{url: '{url}'}}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(path)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, process.kill)  # bounds a hung test; the line comes at once
    watchdog.start()
    try:
        assert process.stderr is not None
        warning = next((line for line in process.stderr if "Prometheus query failed" in line), "")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        watchdog.cancel()
        process.kill()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING sidecar.prometheus_reader ", warning)
    assert f"Prometheus query failed at {url}: connection: ClientConnectorError" in warning
    assert "check prometheus.url and that Prometheus answers there" in warning
    assert "namespace=ml" in warning and "workload=llama" in warning


async def test_kubeconfig_file_connects(tmp_path: Path):
    contract = KubernetesContract()
    contract.add_deployment("ml", "llama", 3, 2, {"app": "llama"})
    runner = web.AppRunner(contract.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        textwrap.dedent(
            f"""
            apiVersion: v1
            kind: Config
            clusters: [{{name: test, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
            users: [{{name: test, user: {{token: not-a-secret}}}}]
            contexts: [{{name: test, context: {{cluster: test, user: test}}}}]
            current-context: test
            """
        )
    )
    api = await connect(str(kubeconfig))
    try:
        count = await KubernetesReader(api).read_replicas("ml", "Deployment", "llama")
    finally:
        await api.close()
        await runner.cleanup()
    assert count is not None and (count.spec, count.ready) == (3, 2)
    assert contract.authorizations == ["Bearer not-a-secret"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_drains_and_saves_state(tmp_path: Path, signum: signal.Signals):
    state = tmp_path / "sidecar.state"
    path = tmp_path / "settings.yaml"
    # Prometheus is absent on purpose: the loop must still tick (holding) and drain.
    path.write_text(
        SETTINGS
        + f"\nprometheus: {{url: 'http://127.0.0.1:{free_port()}', timeout_seconds: 0.2}}\n"
        + f"loop: {{tick_seconds: 1}}\nstate: {{path: '{state}'}}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PREDICTIVE_AUTOSCALER_LOG_FORMAT": "json"},
    )
    # "serving" is logged once the servers are up, after the drain handlers are installed.
    logged = read_until(process, '"message": "serving"')
    process.send_signal(signum)
    _, rest = process.communicate(timeout=60)
    stderr = logged + rest
    assert process.returncode == 0, stderr
    assert state.exists() and '"message": "state saved"' in stderr


def read_until(process: subprocess.Popen[str], wanted: str, timeout: float = 60.0) -> str:
    """The process's stderr up to and including the first line holding `wanted`; fails when the
    process exits first or stays silent for `timeout` seconds (a bound, not a wait)."""
    assert process.stderr is not None
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in process.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if wanted in line:
                found.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found.is_set():
        process.kill()
        process.wait()
        pytest.fail(f"no {wanted!r} within {timeout:g} s; stderr so far:\n{''.join(lines)}")
    return "".join(lines)


def test_truncated_state_at_start_is_logged_and_rebuilt(tmp_path: Path, caplog):
    from autoscaler.decision import DecisionState
    from sidecar.kubernetes_client import ColdStartTracker
    from sidecar.state_store import PersistedState, PersistedWorkload, StateStore, restore_state

    store = StateStore(tmp_path / "sidecar.state")
    saved = PersistedWorkload("auto", None, None, DecisionState(last_replicas=9))
    store.save(PersistedState(1.0, {("ml", "llama"): saved}, {("ml", "llama"): (100.0,)}))
    store.path.write_bytes(store.path.read_bytes()[:-10])

    settings = SettingsFile(tmp_path / "settings.yaml")
    settings.path.write_text(SETTINGS)
    workloads = settings.load().workloads
    loop = ControlLoop(
        workloads=workloads,
        settings=settings.load().loop,
        ports=LoopPorts(
            signals=ScriptedSignals(),
            decide=proportional_decide,
            models={"auto": FlatForecaster},
            latest=LatestDecisions(),
            clock=FakeClock(),
        ),
    )
    tracker = ColdStartTracker(estimate=max)
    with caplog.at_level(logging.WARNING):
        restore_state(store, loop, tracker)
    assert loop.status("ml", "llama").decision_state.last_replicas is None, "nothing restored"
    assert tracker.pairs == {}
    warning = next(r for r in caplog.records if "state file ignored" in r.getMessage())
    assert warning.problem == "checksum mismatch: truncated or corrupt"


async def test_sigterm_finishes_the_tick_and_saves_state(tmp_path: Path):
    from sidecar.core import load_core
    from sidecar.replay_simulation import serve_replay
    from sidecar.settings import ForecastSettings, Settings
    from sidecar.state_store import StateStore

    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp_s,requests\n" + "\n".join(f"{t},600" for t in range(0, 86400, 60)) + "\n")
    state = tmp_path / "sidecar.state"
    base = Settings(
        server={"host": "127.0.0.1", "health_port": 0, "http_port": 0, "grpc_port": 0},
        state={"path": str(state)},
    )
    settings, simulation = serve_replay(trace, base, 60, load_core().estimate_cold_start)
    clock = simulation.clock
    workload = settings.workloads[0].model_copy(update={"forecast": ForecastSettings(model="last_value")})
    settings = settings.model_copy(update={"workloads": (workload,)})

    assert await _serve_replay_until_a_decision_then_sigterm(settings, simulation, clock) == 0
    loaded = StateStore(state).load()
    assert loaded.problem is None and loaded.state is not None
    assert ("replay", "trace") in loaded.state.workloads


async def test_an_unwritable_state_file_at_drain_is_logged_and_the_drain_goes_on(tmp_path: Path, caplog):
    from sidecar.core import load_core
    from sidecar.replay_simulation import serve_replay
    from sidecar.settings import Settings

    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp_s,requests\n" + "\n".join(f"{t},600" for t in range(0, 86400, 60)) + "\n")
    (tmp_path / "file").write_text("a file where the state folder should be")
    base = Settings(
        server={"host": "127.0.0.1", "health_port": 0, "http_port": 0, "grpc_port": 0},
        state={"path": str(tmp_path / "file" / "sidecar.state")},
    )
    settings, simulation = serve_replay(trace, base, 60, load_core().estimate_cold_start)
    clock = simulation.clock
    # The hand-back (floors, Lease) comes after the save, so the drain must get past it.
    assert await _serve_replay_until_a_decision_then_sigterm(settings, simulation, clock) == 0
    assert any("cannot save state at shutdown" in r.getMessage() for r in caplog.records)


async def _serve_replay_until_a_decision_then_sigterm(settings, simulation, clock) -> int:
    """serve() in-process over a replay until its first decision is published, then SIGTERM;
    the exit code of the drain."""
    from sidecar.core import load_core
    from sidecar.main import run_until_signalled

    services = []
    task = asyncio.create_task(
        run_until_signalled(settings, load_core(), clock, simulation=simulation, started=services.append)
    )
    while not services or services[0].latest.get("replay", "trace") is None:
        assert not task.done(), task.exception()
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
    return await asyncio.wait_for(task, 60)


async def test_pod_watchers_follow_the_configured_workloads(tmp_path: Path):
    from kubernetes_asyncio import client as kube

    from sidecar.kubernetes_client import ColdStartTracker
    from sidecar.pod_watch import supervise_pod_watchers
    from sidecar.settings import parse_settings
    from tests.sidecar.kubernetes_contract import pod_event

    contract = KubernetesContract()
    contract.add_deployment("ml", "llama", 2, 2, {"app": "llama"})
    runner = web.AppRunner(contract.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api = kube.ApiClient(kube.Configuration(host=f"http://127.0.0.1:{port}"))
    settings = parse_settings(SETTINGS)
    clock = FakeClock()
    loop = ControlLoop(
        workloads=settings.workloads,
        settings=settings.loop,
        ports=LoopPorts(
            signals=ScriptedSignals(),
            decide=proportional_decide,
            models={"auto": FlatForecaster},
            latest=LatestDecisions(),
            clock=clock,
        ),
    )
    tracker = ColdStartTracker(estimate=max)
    stop = asyncio.Event()
    supervisor = asyncio.create_task(
        supervise_pod_watchers(api, KubernetesReader(api), loop, tracker, clock, stop)
    )
    try:
        await contract.pod_events.put(pod_event("ADDED", "a", "2026-01-01T00:00:00Z", "2026-01-01T00:02:00Z"))
        await eventually(lambda: tracker.pairs, what="the pod watch's first cold start")
        assert contract.watch_selectors == ["app=llama"]
        assert tracker.samples_seconds() == {("ml", "llama"): (120.0,)}
    finally:
        stop.set()
        await contract.pod_events.put(None)
        await asyncio.wait_for(supervisor, 5)
        await api.close()
        await runner.cleanup()


async def test_prewarm_follows_forecast_decisions_only(cluster):
    from autoscaler.decision import Decision, Reason
    from sidecar.kubernetes_client import LeaseElector, Prewarmer
    from sidecar.prewarm_floors import _restore_prewarm, apply_prewarm
    from sidecar.settings import parse_settings

    contract, api = cluster
    contract.add_hpa("ml", "llama", 2)
    settings = parse_settings(
        SETTINGS.replace("max_replicas: 20", "max_replicas: 20\n    prewarm: {name: llama}")
    )
    clock = FakeClock()
    wanted: list[Decision] = []

    def scripted_decide(now, observations, forecast, policy, state):
        return wanted[-1], state

    loop = ControlLoop(
        workloads=settings.workloads,
        settings=settings.loop,
        ports=LoopPorts(
            ScriptedSignals(), scripted_decide, {"auto": FlatForecaster}, LatestDecisions(), clock
        ),
    )
    elector = LeaseElector(api, clock, "ml", "autoscaler", "me", 15)
    await elector.try_acquire()
    prewarmer = Prewarmer(api, elector)

    def floor() -> int:
        return contract.objects[("horizontalpodautoscalers", "ml", "llama")]["spec"]["minReplicas"]

    async def decide(replicas: int, reason: Reason) -> None:
        wanted.append(Decision(clock.now(), replicas, reason))
        await loop.tick()
        await apply_prewarm(prewarmer, loop)

    await decide(7, Reason.FORECAST)
    assert floor() == 7, "the forecast raises the HPA floor ahead of the load"
    await decide(9, Reason.LOAD)
    assert floor() == 2, "once load itself asks, the owner's floor is back"
    await decide(6, Reason.FORECAST)
    await _restore_prewarm(prewarmer)
    assert floor() == 2, "draining hands the floor back"

    await decide(7, Reason.FORECAST)
    assert floor() == 7
    without_prewarm = parse_settings(SETTINGS)
    loop.reconfigure(without_prewarm.workloads, without_prewarm.loop)
    await apply_prewarm(prewarmer, loop)
    assert floor() == 2, "a reload that drops the prewarm section hands the floor back"


async def test_drain_restores_the_floor_before_releasing_the_lease(cluster):
    """serve()'s drain order: the elector stops renewing with stop, the floor is restored while
    the Lease is still ours, and only then is the Lease released (in the other order the
    restore is a follower's write, skipped, and the raised floor outlives the sidecar)."""
    from sidecar.kubernetes_client import LeaseElector, Prewarmer, PrewarmTarget
    from sidecar.prewarm_floors import hand_back

    contract, api = cluster
    contract.add_hpa("ml", "llama", 2)
    clock = FakeClock()
    elector = LeaseElector(api, clock, "ml", "autoscaler", "me", 15)
    successor = LeaseElector(api, clock, "ml", "autoscaler", "next", 15)
    prewarmer = Prewarmer(api, elector)
    stop = asyncio.Event()
    running = asyncio.create_task(elector.run(stop, release_on_stop=False))
    while not elector.is_leader:
        await asyncio.sleep(0.01)
    assert await prewarmer.apply(PrewarmTarget("ml", "HorizontalPodAutoscaler", "llama"), 7) == 7
    stop.set()
    await asyncio.wait_for(running, 5)
    assert elector.is_leader, "still ours after stop, so the restore below is allowed"
    await hand_back(prewarmer, elector)
    assert contract.objects[("horizontalpodautoscalers", "ml", "llama")]["spec"]["minReplicas"] == 2
    assert await successor.try_acquire() is True, "released after the restore"


def self_signed_for_loopback(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.crt", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_in_cluster_service_account_connects_over_tls(tmp_path: Path):
    import ssl

    account = tmp_path / "serviceaccount"
    account.mkdir()
    cert, key = self_signed_for_loopback(account)
    (account / "token").write_text("service-account-token")
    contract = KubernetesContract()
    contract.add_deployment("ml", "llama", 3, 3, {"app": "llama"})
    runner = web.AppRunner(contract.app())
    await runner.setup()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}
    api = await connect(None, service_account_dir=account, environ=environ)
    try:
        count = await KubernetesReader(api).read_replicas("ml", "Deployment", "llama")
    finally:
        await api.close()
        await runner.cleanup()
    assert count is not None and count.spec == 3
    assert contract.authorizations == ["Bearer service-account-token"]
