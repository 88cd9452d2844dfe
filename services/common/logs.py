"""Structured JSON logs, one object per line, carrying the service name, request id and trace id."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from services.common.telemetry import tracing_enabled

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# Who made the RPC being served (see services.common.audit); set by the server interceptor.
caller_var: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="")
AUDIT_LOGGER = "agentfactory.audit"


def _trace_id() -> str:
    if not tracing_enabled():  # no spans without tracing: skip the context lookup on every line
        return ""
    try:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else ""
    except Exception:  # tracing is optional; a log line must never fail because of it
        return ""


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if rid := request_id_var.get():
            entry["request_id"] = rid
        if tid := _trace_id():
            entry["trace_id"] = tid
        if caller := caller_var.get():
            entry["caller"] = caller
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.name == AUDIT_LOGGER:
            # Audit lines written with plain log_event still name their actor.
            entry.setdefault("actor", caller or "local")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(service: str, level: str = "info") -> None:
    # The JSON lines carry none of these; without them a record costs no stack walk (findCaller), no
    # thread, process or multiprocessing lookups.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: object) -> None:
    """Log with structured fields (they become top-level JSON keys)."""
    logger.log(level, msg, extra={"fields": fields})
