"""The agent's configuration: command-line flags, each defaulting to an environment variable.

- `--listen HOST:PORT` (env `GPU_AGENT_LISTEN`): default `0.0.0.0:9400`, dcgm-exporter's port.
- `--interval-seconds S` (env `GPU_AGENT_INTERVAL_SECONDS`): default 5.
- `--pod-resources-socket PATH` (env `GPU_AGENT_POD_RESOURCES_SOCKET`): default
  `/var/lib/kubelet/pod-resources/kubelet.sock`.
- `--node-name NAME` (env `NODE_NAME`, set from `spec.nodeName`): default the OS hostname.

An empty `--pod-resources-socket ''` turns pod attribution off. Bad values exit with a message
that names the flag, its environment variable and the value.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

DEFAULT_LISTEN = "0.0.0.0:9400"
DEFAULT_INTERVAL_SECONDS = 5.0
DEFAULT_POD_RESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
# Bounds on the sampling interval: below 0.1 s NVML's own counters do not move between samples,
# above an hour the GPU signal is useless to a scaler.
MIN_INTERVAL_SECONDS = 0.1
MAX_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class AgentSettings:
    listen_host: str
    listen_port: int
    interval_seconds: float
    pod_resources_socket: Path | None
    node_name: str


class SettingsError(ValueError):
    """A flag or environment value is invalid; the message names it."""


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[IPv6]:PORT`, with 0 < PORT < 65536."""
    host, separator, port_text = text.rpartition(":")
    # isdigit() alone accepts digits int() refuses, such as "²".
    if not separator or not (port_text.isascii() and port_text.isdigit()):
        raise SettingsError(f"expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise SettingsError(f"port must be 1-65535, got {port} in {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as error:
            raise SettingsError(f"{host!r} in {text!r} is not an IPv6 address") from error
    elif host:
        try:
            # What the resolver will do with it: an empty or over-long label fails here, not at bind.
            host.encode("idna")
        except UnicodeError as error:
            raise SettingsError(f"{host!r} in {text!r} is not a host name or address") from error
    return host or "0.0.0.0", port


def parse_interval_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise SettingsError(f"expected a number of seconds, got {text!r}") from error
    if not math.isfinite(value) or not MIN_INTERVAL_SECONDS <= value <= MAX_INTERVAL_SECONDS:
        raise SettingsError(
            f"must be between {MIN_INTERVAL_SECONDS} and {MAX_INTERVAL_SECONDS} seconds, got {text!r}"
        )
    return value


def parse_node_name(text: str) -> str:
    # Node names are DNS subdomains (RFC 1123): at most 253 characters, no whitespace.
    if not text or len(text) > 253 or any(character.isspace() for character in text):
        raise SettingsError(f"expected a Kubernetes node name, got {text!r}")
    return text


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> AgentSettings:
    """Raises SettingsError naming the flag, its environment variable and the bad value."""
    parser = argparse.ArgumentParser(prog="python -m gpu_agent", description="Per-node NVML GPU agent.")
    parser.add_argument(
        "--listen",
        default=environ.get("GPU_AGENT_LISTEN", DEFAULT_LISTEN),
        help=f"HOST:PORT for /metrics and /healthz (env GPU_AGENT_LISTEN, default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--interval-seconds",
        default=environ.get("GPU_AGENT_INTERVAL_SECONDS", str(DEFAULT_INTERVAL_SECONDS)),
        help="seconds between NVML samples (env GPU_AGENT_INTERVAL_SECONDS, default 5)",
    )
    parser.add_argument(
        "--pod-resources-socket",
        default=environ.get("GPU_AGENT_POD_RESOURCES_SOCKET", DEFAULT_POD_RESOURCES_SOCKET),
        help="kubelet pod-resources socket, empty: no pod labels (env GPU_AGENT_POD_RESOURCES_SOCKET)",
    )
    parser.add_argument(
        "--node-name",
        default=environ.get("NODE_NAME") or socket.gethostname(),
        help="the Hostname label of DCGM series (env NODE_NAME, default the OS hostname)",
    )
    args = parser.parse_args(list(argv))
    listen_host, listen_port = _checked("--listen", "GPU_AGENT_LISTEN", parse_listen, args.listen)
    interval_seconds = _checked(
        "--interval-seconds", "GPU_AGENT_INTERVAL_SECONDS", parse_interval_seconds, args.interval_seconds
    )
    node_name = _checked("--node-name", "NODE_NAME", parse_node_name, args.node_name)
    socket_text: str = args.pod_resources_socket
    return AgentSettings(
        listen_host=listen_host,
        listen_port=listen_port,
        interval_seconds=interval_seconds,
        pod_resources_socket=Path(socket_text) if socket_text else None,
        node_name=node_name,
    )


def _checked(flag: str, variable: str, parse: Callable[[str], T], text: str) -> T:
    try:
        return parse(text)
    except SettingsError as error:
        raise SettingsError(f"{flag} (env {variable}): {error}") from error
