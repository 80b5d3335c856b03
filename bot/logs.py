"""Logging setup: readable text or JSON lines, with every secret drillbot knows of masked in every record.

`configure_logging(level, secrets, fmt)`: `fmt="text"` (the default) writes
`2026-01-05 10:00:00,123 INFO bot.web: POST /slack/events 200 ... type=event duration_ms=3.1`;
`fmt="json"` writes one JSON object per line with `ts`, `level`, `logger`, `message` and, when present,
the record's extra fields (`drill_id`, `slack_event_id`, `job`, `status`, `duration_ms`, ...) and `exc`
(the traceback). Masking runs before either formatter, on the message, the traceback and every string
extra field.

`bind(**fields)` adds fields to every record logged inside it by the same thread (the HTTP edge binds
`slack_event_id` around a request, the scheduler binds `job` around a run), so a line logged deep in the
drill loop still says which request or job it belongs to.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["bind", "configure_logging", "make_handler", "mask"]

_TOKEN = re.compile(r"\b(xox[abposre]|xapp)-[A-Za-z0-9-]+")
FORMATS = ("text", "json")

# Attributes every LogRecord has: anything else on a record is an extra field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
_CONTEXT: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar("drillbot_log", default=())


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return _TOKEN.sub(lambda m: f"{m.group(1)}-****", text)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add these fields (None values skipped) to every record logged in this context."""
    current = dict(_CONTEXT.get())
    current.update({k: v for k, v in fields.items() if v is not None})
    token = _CONTEXT.set(tuple(current.items()))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class _ContextFields(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


class _MaskSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = mask(message, self.secrets)
        record.args = None
        if record.exc_text:
            record.exc_text = mask(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = mask(record.stack_info, self.secrets)
        for key, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, key, mask(value, self.secrets))
        return True


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' ="\n')) else text


class _TextFormatter(logging.Formatter):
    """The classic one-line format, with any extra fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in extras.items())
        return line


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            data.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, default=str, ensure_ascii=False)


def make_handler(stream: TextIO, secrets: Iterable[str] = (), fmt: str = "text") -> logging.Handler:
    """A handler writing `fmt` ("text" or "json") to `stream`, with context fields and secrets masked."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(_ContextFields())
    handler.addFilter(_MaskSecrets(secrets))
    return handler


class _MigrationChatter(logging.Filter):
    """Alembic's "Context impl SQLiteImpl." / "Will assume ..." lines come with every schema check, even
    when there is nothing to migrate: below INFO they belong (a real "Running upgrade" line stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Context impl", "Will assume"))


_CHATTER = _MigrationChatter()


def configure_logging(level: int, secrets: Iterable[str] = (), fmt: str = "text") -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(sys.stderr, secrets, fmt)]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    migration = logging.getLogger("alembic.runtime.migration")
    migration.removeFilter(_CHATTER)
    if level > logging.DEBUG:
        migration.addFilter(_CHATTER)
    # slack-sdk logs each failed request (ERROR) and each retry (INFO) itself; drillbot's retry handlers log
    # every retry with its cause, and the final failure reaches drillbot's code, which logs it once with
    # its context. Only -v (DEBUG) shows the SDK's own lines.
    sdk_level = logging.CRITICAL if level > logging.DEBUG else logging.NOTSET
    logging.getLogger("slack_sdk.web.base_client").setLevel(sdk_level)
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
