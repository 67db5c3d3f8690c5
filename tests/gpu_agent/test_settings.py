"""Agent settings: flags over environment over defaults, and errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_agent.settings import AgentSettings, SettingsError, parse_settings

NODE = {"NODE_NAME": "gpu-node-1"}


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        pytest.param(
            [],
            NODE,
            AgentSettings(
                "0.0.0.0", 9400, 5.0, Path("/var/lib/kubelet/pod-resources/kubelet.sock"), "gpu-node-1"
            ),
            id="defaults: dcgm-exporter's port, 5 s, the kubelet socket",
        ),
        pytest.param(
            [
                "--listen",
                "127.0.0.1:19400",
                "--interval-seconds",
                "2.5",
                "--pod-resources-socket",
                "/run/k.sock",
            ],
            NODE,
            AgentSettings("127.0.0.1", 19400, 2.5, Path("/run/k.sock"), "gpu-node-1"),
            id="flags",
        ),
        pytest.param(
            [],
            NODE
            | {
                "GPU_AGENT_LISTEN": ":9500",
                "GPU_AGENT_INTERVAL_SECONDS": "10",
                "GPU_AGENT_POD_RESOURCES_SOCKET": "",
            },
            AgentSettings("0.0.0.0", 9500, 10.0, None, "gpu-node-1"),
            id="environment; empty socket turns attribution off",
        ),
        pytest.param(
            ["--listen", "[::1]:9400", "--node-name", "other"],
            NODE | {"GPU_AGENT_LISTEN": "127.0.0.1:1"},
            AgentSettings("::1", 9400, 5.0, Path("/var/lib/kubelet/pod-resources/kubelet.sock"), "other"),
            id="flags win over environment; IPv6 listen address",
        ),
    ],
)
def test_valid_settings(argv, environ, expected):
    assert parse_settings(argv, environ) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["--listen", "9400"], r"--listen \(env GPU_AGENT_LISTEN\): expected HOST:PORT, got '9400'"
        ),
        pytest.param(["--listen", "host:70000"], r"--listen .*port must be 1-65535, got 70000"),
        pytest.param(["--listen", "[nothost]:1"], r"--listen .*'nothost' .* is not an IPv6 address"),
        pytest.param(["--listen", ":²"], r"--listen .*expected HOST:PORT, got ':²'"),
        pytest.param(["--listen", "0.0..0:9400"], r"--listen .*'0.0..0' .* is not a host name or address"),
        pytest.param(
            ["--interval-seconds", "soon"], r"--interval-seconds \(env GPU_AGENT_INTERVAL_SECONDS\): .*'soon'"
        ),
        pytest.param(
            ["--interval-seconds", "0"], r"--interval-seconds .*between 0.1 and 3600.0 seconds, got '0'"
        ),
        pytest.param(["--interval-seconds", "nan"], r"--interval-seconds .*got 'nan'"),
        pytest.param(["--node-name", "has space"], r"--node-name \(env NODE_NAME\): .*'has space'"),
    ],
)
def test_invalid_settings_name_flag_variable_and_value(argv, message):
    with pytest.raises(SettingsError, match=message):
        parse_settings(argv, NODE)
