"""Logging for the sidecar process: text or one JSON object per line, a per-workload logger, and
the one line written when a workload's published decision changes.

Lines are stamped with wall time, or with an injected clock's: `serve --replay` stamps the trace's
simulated time, so a line says when in the trace it happened, not when the demo printed it."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

from sidecar.latest_decisions import PublishedDecision
from sidecar.settings import LogFormat

# Fields a record carries by default; anything else was passed through `extra=` and is context.
_STANDARD_FIELDS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
# A record's context keys its message already shows: the text line leaves them out, JSON keeps them.
IN_MESSAGE = "in_message"

Now = Callable[[], float]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's context."""

    def __init__(self, now: Now | None = None) -> None:
        super().__init__()
        self._now = now

    def format(self, record: logging.LogRecord) -> str:
        at = self._now() if self._now is not None else record.created
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_FIELDS and k != IN_MESSAGE})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...`, context sorted so lines diff cleanly. With `now`
    the time is that clock's, in UTC (a trace's time), else the wall clock's local time."""

    def __init__(self, now: Now | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._now = now

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if self._now is None:
            return super().formatTime(record, datefmt)
        at = datetime.fromtimestamp(self._now(), UTC)
        return f"{at:%Y-%m-%d %H:%M:%S},{at.microsecond // 1000:03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        shown = {IN_MESSAGE, *getattr(record, IN_MESSAGE, ())}
        context = {k: v for k, v in vars(record).items() if k not in _STANDARD_FIELDS and k not in shown}
        if context:
            line += " " + " ".join(f"{k}={context[k]}" for k in sorted(context))
        return line


def configure_logging(
    log_format: LogFormat, level: str = "INFO", stream: TextIO | None = None, now: Now | None = None
) -> None:
    """Replace the root logger's handlers with one writing `log_format` to `stream` (stderr),
    stamped with `now` (a simulated clock) when given, else with wall time."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(now) if log_format is LogFormat.JSON else TextFormatter(now))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class WorkloadLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds `namespace` and `workload` to every record, merged with the call's own `extra`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def workload_logger(namespace: str, workload: str) -> WorkloadLogger:
    return WorkloadLogger(
        logging.getLogger("sidecar.workload"), {"namespace": namespace, "workload": workload}
    )


def log_decision_change(
    logger: logging.LoggerAdapter[logging.Logger],
    previous: PublishedDecision | None,
    current: PublishedDecision,
) -> bool:
    """Log one line when the replica count or the reason changed; return whether it did.

    Unchanged decisions are not logged: at a 15 s tick, 1,000 workloads would otherwise write
    5.8 million lines a day. The text line is `decision 3 -> 5 (forecast) forecast_rps=...
    lead_seconds=... namespace=... workload=...`: the counts and reason are in the message once.
    """
    before = previous.decision if previous else None
    after = current.decision
    was_unreachable = before is not None and before.objective is not None and before.objective.unreachable
    if after.objective is not None and after.objective.unreachable and not was_unreachable:
        logger.warning("objective unreachable: %s", after.objective.unreachable)
    if before is not None and (before.replicas, before.reason) == (after.replicas, after.reason):
        return False
    context: Mapping[str, Any] = {
        "replicas": after.replicas,
        "previous_replicas": before.replicas if before else None,
        "reason": str(after.reason),
        "forecast_rps": None if after.forecast_rps is None else round(after.forecast_rps, 3),
        "lead_seconds": None if after.lead_seconds is None else round(after.lead_seconds, 1),
        IN_MESSAGE: ("replicas", "previous_replicas", "reason"),
    }
    logger.info(
        "decision %s -> %d (%s)",
        before.replicas if before else "none",
        after.replicas,
        after.reason,
        extra=dict(context),
    )
    return True
