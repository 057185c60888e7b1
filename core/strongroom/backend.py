"""``Backend``: what every slot's backend shares.

A backend is a class registered under a slot's entry-point group.  It
declares its settings struct and takes a validated instance of it; it owns
whatever it opens and releases it in :meth:`Backend.close`.

``Backend`` is generic over its settings type, so a backend that declares
``class FilesStore(Store[FilesStoreSettings])`` sees ``self.settings`` typed
as ``FilesStoreSettings``.  A backend that names no type parameter takes
:class:`~strongroom.settings.NoSettings` (its ``Settings``) and is typed as
taking any :class:`~strongroom.settings.BackendSettings`.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Generic, Self

from strongroom.settings import BackendSettings, NoSettings

if TYPE_CHECKING:  # a TypeVar default (PEP 696) is only in typing from Python 3.13
    from typing_extensions import TypeVar

    S_co = TypeVar("S_co", bound=BackendSettings, covariant=True, default=BackendSettings)
else:
    from typing import TypeVar

    S_co = TypeVar("S_co", bound=BackendSettings, covariant=True)

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


class Backend(Closeable, Generic[S_co]):
    """Base of the four slot interfaces, generic over the type of its settings."""

    #: The struct that validates this backend's config table; each backend names its own.
    Settings: ClassVar[type[S_co]] = NoSettings  # type: ignore[assignment]

    @classmethod
    def declaration_problems(cls) -> list[str]:
        """What the class fails to declare or implement, checked when it is loaded.

        An interface extends the list (a key provider must declare ``traits``);
        a backend found wanting is a plugin error at load time, not a crash later.
        """
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        return [f"does not implement {', '.join(missing)}"] if missing else []

    def __init__(self, settings: S_co | None = None) -> None:
        """:raises TypeError: ``settings`` is omitted and ``Settings`` has required fields."""
        self.settings: S_co = settings if settings is not None else self.Settings()
