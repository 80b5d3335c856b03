"""Logging setup, with a filter that masks every secret drillbot knows of in every record."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

__all__ = ["configure_logging", "mask"]

_TOKEN = re.compile(r"\b(xox[abposre]|xapp)-[A-Za-z0-9-]+")


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return _TOKEN.sub(lambda m: f"{m.group(1)}-****", text)


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
        return True


def configure_logging(level: int, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_MaskSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("cheroot").setLevel(logging.WARNING)
