"""Time budgets: every outbound call gives up before whatever waits on it does.

One place for the whole chain; each number below is the constant or setting named beside it.

A workload's tick: `loop.workload_timeout_seconds` (T, default 10 s), after which the tick is
abandoned and the previous decision stays (and ages).
  - Instant queries and the replica read run together; each must end by READ_SHARE * T (4 s at
    the default). Prometheus: `prometheus.timeout_seconds` (default 4 s; Prometheus also gets it
    as its own `timeout`), which the settings refuse above READ_SHARE * T; a batch of a tick's
    instant queries and, when it is refused, their reads one by one share that one timeout
    (sidecar.prometheus_reader). Replica read:
    `read_budget(T)`, the smaller of REQUEST_TIMEOUT_SECONDS (10 s) and READ_SHARE * T, so a
    silent API server costs the read, not the tick (it once waited 10 s = T and the two raced).
  - The history read waits at most T / 2 (control_loop._refresh_history); it runs on as its own
    task and a later tick collects it.
  - What is left (at least T / 10) is deciding and publishing.
An HTTP request to the external metrics API or KEDA's metrics-api JSON: KEDA's client gives 3 s
by default, the aggregator more. A TokenReview then a SubjectAccessReview run in it, each
REVIEW_TIMEOUT_SECONDS (1 s, metrics_adapter.authentication).
The Lease: renewed every duration / 3; each call gets min(REQUEST_TIMEOUT_SECONDS, duration / 3).
A pod watch: the server ends it after 300 s; the client gives up 10 s after that.
A pre-warm patch (after a tick, leader only): REQUEST_TIMEOUT_SECONDS.
Connections: a client must send a complete request within `server.idle_timeout_seconds` of
connecting or of its previous answer (the header-read and idle timeout are the same clock), and a
TLS handshake must finish within it too.
"""

from __future__ import annotations

# Of the workload timeout, what one read (Prometheus or the replica count) may take.
READ_SHARE = 0.4
# Any single Kubernetes API call; kubernetes-asyncio would otherwise wait forever.
REQUEST_TIMEOUT_SECONDS = 10.0


def read_budget(workload_timeout_seconds: float) -> float:
    """Seconds a replica read may take inside a tick of `workload_timeout_seconds`."""
    return min(REQUEST_TIMEOUT_SECONDS, READ_SHARE * workload_timeout_seconds)
