"""Logging for touchflow's processes: human text by default, one JSON object a line with
TOUCHFLOW_LOG_FORMAT=json, for a log pipeline.

Every JSON line carries the ids of what it is about where they are known: `workflow_id` (from Temporal's
activity or workflow context, or `log_context`), `event_id` (`log_context`: the relay, ingestion, a delivery),
besides the record's own structured extras. Log calls pass ids and names, never a customer's email, phone or
a secret (CONVENTIONS.md); as a last guard an email address that reaches a JSON line anyway is masked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import traceback
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
MASK = "[email]"
_context: ContextVar[dict[str, str]] = ContextVar("touchflow_log_context", default={})  # noqa: B039
# What every LogRecord has; anything else on a record is an `extra` a log call gave.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Ids (`event_id`, `workflow_id`) that every log line written inside the block carries."""
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def mask(text: str) -> str:
    return _EMAIL.sub(MASK, text)


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe(v) for v in value]
    return mask(str(value))


def _temporal_ids(record: logging.LogRecord) -> dict[str, Any]:
    """The workflow (and activity) a record was written in: the SDK's logger extras, else the activity's
    context (touchflow's activities log with the module logger)."""
    workflow = getattr(record, "temporal_workflow", None)
    if isinstance(workflow, dict):
        return {"workflow_id": workflow.get("workflow_id"), "run_id": workflow.get("run_id")}
    act = getattr(record, "temporal_activity", None)
    if isinstance(act, dict):
        return {"workflow_id": act.get("workflow_id"), "activity": act.get("activity_type")}
    if activity.in_activity():
        info = activity.info()
        return {"workflow_id": info.workflow_id, "activity": info.activity_type, "attempt": info.attempt}
    return {}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the context's ids and the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        line |= {k: v for k, v in _temporal_ids(record).items() if v is not None}
        line |= _context.get()
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in ("temporal_workflow", "temporal_activity"):
                line.setdefault(key, _safe(value))
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["traceback"] = mask("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """The root logger of a CLI process: `text` (the default) or `json` lines on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # httpx logs each request's URL at INFO (a worker's own metrics scrape; a provider's query string).
    for chatty in ("mail.log", "alembic", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
