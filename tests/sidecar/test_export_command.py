"""`predictive-autoscaler export` against a real Prometheus backfilled with promtool: the trace it
writes must read back through `read_trace` with the counter's rates and its gap, and replay."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from sidecar.cli import main
from simulator.trace import read_trace
from tests.conftest import free_port

STEP = 60
SAMPLE = 15
LOAD = 'sum(rate(requests_total{namespace="$namespace",workload="$workload"}[1m]))'


def data_end() -> int:
    # Whole minutes, ten minutes back, so every sample lies in the backfilled blocks.
    return (int(time.time()) // STEP) * STEP - 600


def openmetrics(end: int) -> str:
    """Three hours of a counter sampled every 15 s: 10 rps, then a 30-minute gap with no samples,
    then 30 rps; and a second workload's counter, so that an unaggregated query is ambiguous."""
    start, gap_start, gap_end = end - 3 * 3600, end - 2 * 3600, end - 2 * 3600 + 1800
    lines = ["# TYPE requests counter"]
    total = 0.0
    for t in range(start, end + 1, SAMPLE):
        if t > start:
            total += SAMPLE * (10 if t <= gap_start else 30)
        if not gap_start < t < gap_end:
            lines.append(f'requests_total{{namespace="ml",workload="llama"}} {total} {t}')
        lines.append(f'requests_total{{namespace="ml",workload="other"}} {t - start} {t}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(module_prometheus_factory):
    end = data_end()
    server = module_prometheus_factory()
    server.backfill(openmetrics(end))
    server.start()
    return server, end


def write_config(path: Path, prometheus_url: str) -> Path:
    path.write_text(
        f"prometheus: {{url: '{prometheus_url}'}}\n"
        "workloads:\n"
        "  - name: llama\n"
        "    namespace: ml\n"
        "    replica_capacity_rps: 5\n"
        f"    queries: {{load: '{LOAD}'}}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.integration
def test_workload_history_becomes_a_trace_with_its_rates_and_gap(prometheus, tmp_path: Path) -> None:
    server, end = prometheus
    config = write_config(tmp_path / "settings.yaml", server.url)
    out = tmp_path / "llama.csv"
    code = main(
        ["export", "--config", str(config), "--workload", "ml/llama", "--days", "0.25", "--output", str(out)]
    )
    assert code == 0
    trace = read_trace(out)
    assert trace.step_seconds == STEP
    rates = trace.rate_rps()
    times = trace.start_seconds + STEP * np.arange(len(rates))
    gap_start, gap_end = end - 2 * 3600, end - 2 * 3600 + 1800
    # Steps well inside each stretch carry its rate exactly (a linear counter's rate is exact).
    before = (times >= end - 3 * 3600 + 2 * STEP) & (times < gap_start - 2 * STEP)
    after = (times >= gap_end + 2 * STEP) & (times < end - 2 * STEP)
    assert before.sum() >= 50 and after.sum() >= 80
    np.testing.assert_allclose(rates[before], 10.0, rtol=1e-9)
    np.testing.assert_allclose(rates[after], 30.0, rtol=1e-9)
    # The gap is left out of the file, so it reads back as unknown, not as zero load.
    inside_gap = (times >= gap_start + 2 * STEP) & (times < gap_end - 2 * STEP)
    assert inside_gap.sum() >= 20 and np.isnan(rates[inside_gap]).all()
    assert not np.any(rates[~np.isnan(rates)] == 0)
    # A row is the step that starts at its timestamp: the step ending at the gap's first
    # missing sample is the last one with a value.
    last_before_gap = times[(times < gap_start + 5 * STEP) & ~np.isnan(rates)][-1]
    assert last_before_gap == gap_start - STEP
    assert rates[times == last_before_gap] == pytest.approx(10.0)

    # The same PromQL given directly, to standard output, writes the same trace.
    query = LOAD.replace("$namespace", "ml").replace("$workload", "llama")
    direct = tmp_path / "direct.csv"
    code = main(
        ["export", "--prometheus", server.url, "--query", query, "--days", "0.25", "--output", str(direct)]
    )
    assert code == 0 and direct.read_text() == out.read_text()

    assert main(["replay", "--trace", str(out), "--policies", "hpa,predictive,oracle", "--quiet"]) == 0


@pytest.mark.integration
def test_standard_output_is_the_default(prometheus, capsys: pytest.CaptureFixture[str]) -> None:
    server, _ = prometheus
    query = 'sum(rate(requests_total{workload="llama"}[1m]))'
    assert main(["export", "--prometheus", server.url, "--query", query, "--days", "0.25"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "timestamp_s,requests" and len(lines) > 100
    assert {line.split(",")[1] for line in lines[10:40]} == {"600"}, "10 rps over 60 s steps"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("query", "problem"),
    [
        pytest.param('rate(requests_total{namespace="ml"}[1m])', "2 series where one", id="two series"),
        pytest.param('-sum(rate(requests_total{workload="llama"}[1m]))', "negative rate", id="negative"),
        pytest.param("sum(rate(nothing_total[1m]))", "matched no series", id="no series"),
        pytest.param("sum(rate(requests_total[1m]", "bad_query", id="PromQL syntax"),
    ],
)
def test_unusable_answers_exit_1_and_write_nothing(
    prometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str], query: str, problem: str
) -> None:
    server, _ = prometheus
    out = tmp_path / "trace.csv"
    # --query=... so that a query starting with "-" is not taken for an option.
    code = main(
        ["export", "--prometheus", server.url, f"--query={query}", "--days", "0.25", "--output", str(out)]
    )
    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("export: ") and problem in error
    assert not out.exists()


def test_nothing_listening_exits_1_naming_the_connection(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["export", "--prometheus", url, "--query", "up", "--days", "1"]) == 1
    error = capsys.readouterr().err
    assert url in error and "connection" in error


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        pytest.param(["--workload", "ml/llama"], "--workload needs --config", id="workload without config"),
        pytest.param(
            ["--workload", "llama", "--config", "{config}"], "expected NAMESPACE/NAME", id="no namespace"
        ),
        pytest.param(
            ["--workload", "ml/mistral", "--config", "{config}"], "it lists: ml/llama", id="unknown"
        ),
        pytest.param(["--query", "up", "--days", "0"], "--days=0", id="no days"),
        pytest.param(["--query", "up", "--step-seconds", "0"], "--step-seconds=0", id="no step"),
        pytest.param(["--query", " "], "--query is empty", id="empty query"),
        pytest.param(["--query", "up", "--prometheus", "ftp://x"], "'ftp://x'", id="not http"),
        pytest.param(["--query", "up", "--prometheus", "http://127.0.0.1:99999"], ":99999'", id="port range"),
        pytest.param(["--query", "up", "--prometheus", "http://[::1"], "'http://[::1'", id="broken IPv6"),
        pytest.param(["--query", "up", "--days", "1e-300"], "shorter than one step", id="span under a step"),
        pytest.param(["--query", "up", "--config", "{missing}"], "cannot read settings file", id="no config"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], problem: str
) -> None:
    config = write_config(tmp_path / "settings.yaml", "http://127.0.0.1:9")
    paths = {"{config}": str(config), "{missing}": str(tmp_path / "absent.yaml")}
    assert main(["export", *(paths.get(a, a) for a in arguments)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("export: ") and problem in error and error.count("\n") == 1
