"""Log lines of ``strongroom serve``: JSON, one per line, on stderr, redacted.

The access log (``strongroom.access``, one line per request from the
middleware) and the server's own warnings go through
:class:`JsonLines`, with :class:`strongroom.redaction.RedactingFilter` on
the handler and every string field passed through
:func:`strongroom.redaction.redact` as well.  uvicorn's own access log,
which would print query strings, is off.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from strongroom.redaction import redact

__all__ = ["ACCESS_FIELDS", "JsonLines", "log_config"]

#: The attributes the middleware puts on each access-log record.
ACCESS_FIELDS = ("method", "path", "status", "key_id", "duration_ms", "replayed", "reason")


class JsonLines(logging.Formatter):
    """``{"time", "level", "logger", "message", ...access fields}`` as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:  # the type only: a message could quote data
            line["error"] = getattr(record.exc_info[0], "__name__", "error")
        return json.dumps(line, separators=(",", ":"), default=str)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's ``log_config``: strongroom's and uvicorn's loggers to stderr as JSON lines."""
    handler = ["stderr"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "strongroom.redaction.RedactingFilter"}},
        "formatters": {"json": {"()": "strongroom_contrib.server.logs.JsonLines"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["redact"],
            }
        },
        "loggers": {
            "strongroom": {"handlers": handler, "level": "WARNING", "propagate": False},
            "strongroom.access": {"handlers": handler, "level": level, "propagate": False},
            "strongroom.server": {"handlers": handler, "level": level, "propagate": False},
            "strongroom_plugins": {"handlers": handler, "level": "WARNING", "propagate": False},
            "strongroom_contrib": {"handlers": handler, "level": "WARNING", "propagate": False},
            "uvicorn": {"handlers": handler, "level": level, "propagate": False},
            "uvicorn.error": {"handlers": handler, "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }
