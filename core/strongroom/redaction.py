"""Masking what plugins name as sensitive in strongroom's log output.

Hook plugins answer ``strongroom_redaction_patterns`` with regular
expressions; each :class:`~strongroom.Strongroom` adds the answers to this
process's set when it is built.  :class:`RedactingFilter` masks every
match in a record's formatted message (and drops its arguments), so it
belongs on a *handler*, where records from every logger pass: the CLI puts
one on its stderr handler, and an application puts one on its own::

    handler.addFilter(strongroom.redaction.RedactingFilter())

Patterns are only ever added: masking too much is the safe mistake.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

__all__ = ["MASK", "RedactingFilter", "add_patterns", "redact"]

MASK = "[redacted]"

_lock = threading.Lock()
_patterns: dict[str, re.Pattern[str]] = {}


def add_patterns(patterns: Iterable[str]) -> None:
    """Mask matches of each pattern from now on, in this process.

    :raises re.error: a pattern is not a valid regular expression.
    """
    compiled = {pattern: re.compile(pattern) for pattern in patterns}
    with _lock:
        _patterns.update(compiled)


def redact(text: str) -> str:
    """``text`` with every match of every added pattern replaced by :data:`MASK`.

    All patterns are matched on the original text and their spans merged, so
    one pattern's mask never hides the rest of another's match.
    """
    spans = sorted(
        match.span()
        for pattern in list(_patterns.values())
        for match in pattern.finditer(text)
        if match.end() > match.start()
    )
    if not spans:
        return text
    pieces, position = [], 0
    for start, end in spans:
        if end <= position:
            continue
        if start >= position:
            pieces += [text[position:start], MASK]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message, traceback and stack with :func:`redact`; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _patterns:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        return True
