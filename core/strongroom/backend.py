"""``Backend``: what every slot's backend shares.

A backend is a class registered under a slot's entry-point group.  It
declares its settings model and takes a validated instance of it; it owns
whatever it opens and releases it in :meth:`Backend.close`.
"""

from __future__ import annotations

from types import TracebackType
from typing import ClassVar, Self

from strongroom.settings import BackendSettings, NoSettings

__all__ = ["Backend", "Closeable"]


class Closeable:
    """Context management around an idempotent :meth:`close`."""

    def close(self) -> None:
        """Release what the object holds.  Idempotent; a no-op by default."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Backend(Closeable):
    """Base of the four slot interfaces."""

    #: The model that validates this backend's config table.
    Settings: ClassVar[type[BackendSettings]] = NoSettings

    def __init__(self, settings: BackendSettings | None = None) -> None:
        """:raises pydantic.ValidationError: ``settings`` is missing required values."""
        self.settings = settings if settings is not None else self.Settings()
