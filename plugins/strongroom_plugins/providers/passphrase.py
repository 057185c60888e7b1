"""The ``passphrase`` key provider: a key-encryption key derived with Argon2id.

The root of trust is the user's passphrase.  Each wrap draws a fresh salt,
derives a 256-bit key-encryption key (KEK) from the passphrase with Argon2id
(RFC 9106) and seals the secret with AES-256-GCM.  Nothing is cached, on
disk or in memory: every wrap and unwrap reads the passphrase once, afresh.

Where the passphrase comes from, first match wins:

1. the ``passphrase`` setting, a secret reference (``file:``, ``env:``,
   ``command:``);
2. ``STRONGROOM_PASSPHRASE_FILE``: a file readable by its owner only (mode
   0600 or stricter);
3. ``STRONGROOM_PASSPHRASE_COMMAND``: the standard output of a program, run
   without a shell (``pass show strongroom``, a password manager's CLI);
4. a prompt on the terminal (``getpass``, no echo), only when standard
   input is a TTY; a new wrap asks twice and compares;
5. otherwise :class:`~strongroom.errors.KeyLockedError`, whose one line says
   to set one of the two variables.

A file or command output loses exactly one trailing line ending (``\\n`` or
``\\r\\n``); any other whitespace is part of the passphrase.  There is
deliberately no command-line option: arguments are visible to every user
through ``ps``.  A library caller can supply its own source instead
(``PassphraseProvider(passphrase=ask_in_my_gui)``, see
:class:`PassphraseRequest`).  An empty passphrase is refused.  Text is
normalised to Unicode NFC before UTF-8 encoding, so the same passphrase
typed on different systems, or read from a file, derives the same key.

**Changing the passphrase.**  :meth:`PassphraseProvider.rewrap` wraps afresh
for an account this provider already wraps, under a *new* passphrase, read
from its own sources so that the old one can still unlock the account in
the same run: the ``new_passphrase`` setting, then
``STRONGROOM_NEW_PASSPHRASE_FILE``, then ``STRONGROOM_NEW_PASSPHRASE_COMMAND``,
then a prompt ("New passphrase for ...", asked twice); with none of them,
:class:`~strongroom.errors.KeyLockedError`.  It never falls back to the
current passphrase: a change that silently kept it would mislead.  A change
re-wraps the *same* master key, so an old copy of the key record (a backup)
still opens with the old passphrase, and yields every data key that copy
holds, including those that encrypt data written after the change.
Replacing the master key and the data keys as well puts data written
afterwards out of that copy's reach, and re-encrypting moves existing data
there too.

**Rollback.**  The provider keeps no state, so it records no key-record
generation (:meth:`~strongroom.key_provider.KeyProvider.record_generation`
is the default no-op) and gives no protection against a restored older key
record; pair it with the ``keyring`` provider for that.

Wrap blob, version 1 (all integers big-endian)::

    offset  size  field
         0     4  magic b"SRPW"
         4     1  format version, 0x01
         5     4  Argon2id memory cost in KiB (u32)
         9     4  Argon2id iterations (u32)
        13     4  Argon2id lanes (u32)
        17    16  salt
        33    12  AES-256-GCM nonce
        45   n+16 AES-256-GCM ciphertext of the n-byte secret, then the tag

    KEK = Argon2id(passphrase, salt, memory, iterations, lanes, length=32)
    AAD = bytes 0..44 (everything before the ciphertext) || context.encode()

Because the parameters travel with each blob, changing the settings affects
new wraps only; old blobs still unwrap with the parameters they were made
with.  Parameters outside the accepted ranges (memory 19 MiB to 1 GiB,
2 to 16 passes, 1 to 16 lanes) are refused on unwrap too, before any
passphrase is asked for, so an altered header cannot make Argon2 run at a
cost beyond what a setting could ask for.

A failed tag cannot tell a wrong passphrase from an altered blob or another
wrap context, so all three raise the same
:class:`~strongroom.errors.UnlockFailedError` (exit 4): "wrong passphrase
for ..., or the wrapped key was altered".  A blob that is not of this format
at all (magic, version, length, parameters) raises
:class:`~strongroom.errors.IntegrityError` before anyone is asked for a
passphrase.

The derived KEK lives in a ``bytearray`` that is zeroed after use.  The
passphrase itself is an immutable ``bytes`` (and a ``str`` when typed) that
Python cannot reliably wipe.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import Annotated, Final

from msgspec import Meta

from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyLockedError,
    UnlockFailedError,
)
from strongroom.key_provider import KeyProvider, KeyProviderTraits, WrapContext
from strongroom.secret import Secret
from strongroom.settings import BackendSettings, SecretRef
from strongroom_plugins.providers._passphrase_sources import (
    COMMAND_VARIABLE,
    FILE_VARIABLE,
    NEW_COMMAND_VARIABLE,
    NEW_FILE_VARIABLE,
    PassphraseRequest,
    PassphraseSource,
    configured_source,
    read_passphrase,
)
from strongroom_plugins.providers._wrapping import (
    KEY_SIZE,
    check_length,
    check_magic,
    open_with_kek,
    seal_with_kek,
    wipe,
)

__all__ = [
    "COMMAND_VARIABLE",
    "FILE_VARIABLE",
    "NEW_COMMAND_VARIABLE",
    "NEW_FILE_VARIABLE",
    "PassphraseProvider",
    "PassphraseRequest",
    "PassphraseSettings",
    "PassphraseSource",
    "read_passphrase",
]

#: OWASP's smallest recommended Argon2id configuration is 19 MiB with 2 passes.
MIN_MEMORY_KIB: Final = 19456
MAX_MEMORY_KIB: Final = 1024 * 1024  # 1 GiB
MIN_ITERATIONS: Final = 2
MAX_ITERATIONS: Final = 16
MAX_LANES: Final = 16

MAGIC: Final = b"SRPW"
VERSION: Final = 1
SALT_SIZE: Final = 16
_PARAMS = struct.Struct(">III")
PREFIX_SIZE: Final = len(MAGIC) + 1 + _PARAMS.size + SALT_SIZE  # 33 bytes, before the nonce


class PassphraseSettings(BackendSettings, frozen=True, kw_only=True):
    """Argon2id cost for new wraps; each blob keeps the values it was made with."""

    memory_kib: Annotated[
        int, Meta(ge=MIN_MEMORY_KIB, le=MAX_MEMORY_KIB, description="Argon2id memory cost in KiB")
    ] = 65536
    iterations: Annotated[
        int, Meta(ge=MIN_ITERATIONS, le=MAX_ITERATIONS, description="Argon2id passes over memory")
    ] = 3
    lanes: Annotated[int, Meta(ge=1, le=MAX_LANES, description="Argon2id parallelism")] = 4
    passphrase: Annotated[
        SecretRef | None,
        Meta(
            description="where the passphrase comes from (env:, file:, command:); "
            f"default: ${FILE_VARIABLE}, ${COMMAND_VARIABLE}, then a prompt"
        ),
    ] = None
    new_passphrase: Annotated[
        SecretRef | None,
        Meta(
            description="where a changed passphrase comes from, read only to wrap afresh; "
            f"default: ${NEW_FILE_VARIABLE}, ${NEW_COMMAND_VARIABLE}, then a prompt"
        ),
    ] = None


def _normalise(passphrase: str | bytes) -> bytes:
    """NFC-normalised UTF-8 for text; bytes that are not UTF-8 are used as they are."""
    if isinstance(passphrase, bytes):
        try:
            text = passphrase.decode("utf-8")
        except UnicodeDecodeError:
            return passphrase
    else:
        text = passphrase
    import unicodedata  # only here: a command that never reads a passphrase does not load it

    # surrogateescape: bytes that were not UTF-8 (from the environment) come back as they were
    return unicodedata.normalize("NFC", text).encode("utf-8", "surrogateescape")


def _check_blob(blob: bytes) -> tuple[int, int, int]:
    """The Argon2id parameters of a wrap, checked against the accepted ranges.

    :raises strongroom.errors.IntegrityError: not a passphrase wrap of this
        version, or parameters out of range (an altered header must not make
        Argon2 run at any cost it names).
    """
    what = "passphrase-wrapped key"
    check_magic(blob, MAGIC, VERSION, what)
    check_length(blob, PREFIX_SIZE)
    memory_kib, iterations, lanes = _PARAMS.unpack_from(blob, len(MAGIC) + 1)
    if not (
        MIN_MEMORY_KIB <= memory_kib <= MAX_MEMORY_KIB
        and MIN_ITERATIONS <= iterations <= MAX_ITERATIONS
        and 1 <= lanes <= MAX_LANES
    ):
        raise IntegrityError(f"the {what} names Argon2id parameters outside the accepted range")
    return int(memory_kib), int(iterations), int(lanes)


def _derive(
    passphrase: bytes, salt: bytes, memory_kib: int, iterations: int, lanes: int
) -> bytearray:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id  # off the cold path

    kdf = Argon2id(
        salt=salt, length=KEY_SIZE, iterations=iterations, lanes=lanes, memory_cost=memory_kib
    )
    kek = bytearray(KEY_SIZE)
    if hasattr(kdf, "derive_into"):  # newer cryptography: no intermediate bytes object
        kdf.derive_into(passphrase, kek)
    else:
        kek[:] = kdf.derive(passphrase)
    return kek


class PassphraseProvider(KeyProvider[PassphraseSettings]):
    """Wraps under a KEK derived from the user's passphrase with Argon2id.

    :param settings: Argon2id cost for new wraps.
    :param passphrase: where the passphrase comes from, for every request
        (a change included: see :attr:`PassphraseRequest.change`); by
        default the ``passphrase`` setting (``new_passphrase`` for a change)
        if set, else :func:`read_passphrase` (environment variables, else a
        TTY prompt).
    """

    Settings = PassphraseSettings
    #: The KEK is derived in this process (exportable); the user supplies the
    #: passphrase each time; it lives in the user's head, so it outlives any
    #: reinstall (and device) as long as the wrapped blob is kept.
    traits = KeyProviderTraits(
        non_exportable_root=False, needs_user_presence=True, survives_reinstall=True
    )

    def __init__(
        self,
        settings: PassphraseSettings | None = None,
        *,
        passphrase: PassphraseSource | None = None,
    ) -> None:
        super().__init__(settings)
        self._params = self.settings
        self._custom_source = passphrase is not None
        self._source: PassphraseSource = (
            passphrase
            if passphrase is not None
            else configured_source(self._params.passphrase, self._params.new_passphrase)
        )
        #: Per thread: how deep in :meth:`holding_secrets` it is, and what it read
        #: there (the current passphrase under False, a new one under True).
        self._local = threading.local()
        #: Every passphrase held by any thread, so that :meth:`forget_secrets` reaches all.
        self._all_held: set[Secret] = set()
        self._hold_lock = threading.Lock()

    def use_secret(self, source: PassphraseSource) -> None:
        """Ask ``source`` (the application's own prompt) for the passphrase from now on."""
        self._source = source
        self._custom_source = True

    @contextlib.contextmanager
    def holding_secrets(self) -> Iterator[None]:
        """Ask once for the passphrase within this (and for a new one, once); wipe both after.

        Per thread: another thread, in a block of its own or in none, asks for itself.
        """
        local = self._local
        local.depth = getattr(local, "depth", 0) + 1
        if local.depth == 1:
            local.held = {}
        try:
            yield
        finally:
            local.depth -= 1
            if not local.depth:
                self._wipe(local.held.values())
                local.held = {}

    def forget_secrets(self) -> None:
        """Wipe every passphrase held, in every thread: the session locked or closed."""
        with self._hold_lock:
            held, self._all_held = self._all_held, set()
        for secret in held:
            secret.wipe()

    def close(self) -> None:
        self.forget_secrets()

    def _wipe(self, secrets: Iterable[Secret]) -> None:
        with self._hold_lock:
            for secret in list(secrets):
                secret.wipe()
                self._all_held.discard(secret)

    def _forget(self, change: bool) -> None:
        """Drop a held passphrase that turned out wrong, or changed, so the next use asks."""
        held = getattr(self._local, "held", {}).pop(change, None)
        if held is not None:
            self._wipe([held])

    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Seal ``secret`` under a KEK derived from the passphrase and a fresh salt.

        :raises strongroom.errors.KeyLockedError: no passphrase source is available.
        :raises strongroom.errors.UnlockFailedError: the passphrase is empty, or the
            two typed at the prompt differ.
        :raises strongroom.errors.SecretSourceError: the passphrase file or
            command named by the environment cannot be used.
        """
        return self._seal(secret, context, self._passphrase(context, new=True))

    def rewrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Seal ``secret`` under a *new* passphrase: change the passphrase of ``context``'s account.

        For an account this provider already wraps.  The new passphrase comes
        from the change sources (the ``new_passphrase`` setting,
        ``STRONGROOM_NEW_PASSPHRASE_FILE``, ``STRONGROOM_NEW_PASSPHRASE_COMMAND``,
        a prompt), never from those that give the current one, so the
        current one can still unlock in the same run.

        :raises strongroom.errors.KeyLockedError: no new-passphrase source is available.
        :raises strongroom.errors.UnlockFailedError: the new passphrase is empty,
            or the two typed at the prompt differ.
        :raises strongroom.errors.SecretSourceError: the new passphrase's file
            or command cannot be used.
        """
        blob = self._seal(secret, context, self._passphrase(context, new=True, change=True))
        self._forget(change=False)  # the current passphrase is about to be the old one
        return blob

    def _seal(self, secret: bytes, context: WrapContext, passphrase: bytes) -> bytes:
        params = self._params
        salt = os.urandom(SALT_SIZE)
        prefix = (
            MAGIC
            + bytes([VERSION])
            + _PARAMS.pack(params.memory_kib, params.iterations, params.lanes)
            + salt
        )
        kek = _derive(passphrase, salt, params.memory_kib, params.iterations, params.lanes)
        try:
            return seal_with_kek(kek, prefix, secret, context)
        finally:
            wipe(kek)

    def renew(
        self, secret: bytes, context: WrapContext, *, previous: bytes, previous_context: WrapContext
    ) -> bytes:
        """Seal ``secret`` under the current passphrase, asked for once and proved on ``previous``.

        A master-key rotation must not change the passphrase: the one
        supplied opens ``previous`` first (a wrong one raises
        :class:`~strongroom.errors.UnlockFailedError` and nothing is wrapped),
        then seals ``secret`` under a fresh salt and the current settings.

        :raises strongroom.errors.UnlockFailedError: the passphrase does not open
            ``previous``, or ``previous`` was altered.
        :raises strongroom.errors.IntegrityError: ``previous`` is not a passphrase wrap.
        :raises strongroom.errors.KeyLockedError: no passphrase source is available.
        """
        _check_blob(previous)  # before anyone is asked for a passphrase
        passphrase = self._passphrase(previous_context, new=False)
        proof = bytearray(self._open(previous, previous_context, passphrase))
        proof[:] = bytes(len(proof))
        return self._seal(secret, context, passphrase)

    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        """Re-derive the KEK with the blob's own salt and parameters and open it.

        :raises strongroom.errors.IntegrityError: ``blob`` is not a passphrase
            wrap of a version this code reads, or names parameters out of range.
        :raises strongroom.errors.UnlockFailedError: wrong passphrase, an altered
            blob or another context (indistinguishable), or an empty passphrase.
        :raises strongroom.errors.KeyLockedError: no passphrase source is available.
        :raises strongroom.errors.SecretSourceError: the passphrase file or
            command named by the environment cannot be used.
        """
        _check_blob(blob)  # before anyone is asked for a passphrase
        return self._open(blob, context, self._passphrase(context, new=False))

    def _open(self, blob: bytes, context: WrapContext, passphrase: bytes) -> bytes:
        memory_kib, iterations, lanes = _check_blob(blob)
        salt = blob[PREFIX_SIZE - SALT_SIZE : PREFIX_SIZE]
        kek = _derive(passphrase, salt, memory_kib, iterations, lanes)
        try:
            return open_with_kek(kek, blob, PREFIX_SIZE, context)
        except AuthenticationError:
            self._forget(change=False)
            raise UnlockFailedError(
                f"wrong passphrase for {context.account!r}, or the wrapped key was altered"
            ) from None
        finally:
            wipe(kek)

    def _passphrase(self, context: WrapContext, *, new: bool, change: bool = False) -> bytes:
        holding = getattr(self._local, "depth", 0) > 0
        held = self._local.held.get(change) if holding else None
        if held is not None and not held.wiped:
            return bytes(held.view())
        answer = self._source(PassphraseRequest(context, new, change))
        if isinstance(answer, Secret):
            answer = bytes(answer.view())
        if not isinstance(answer, (str, bytes)):
            raise KeyLockedError(f"no passphrase was given for {context.account!r}")
        passphrase = _normalise(answer)
        if not passphrase:
            raise UnlockFailedError(f"an empty passphrase is refused (for {context.account!r})")
        if holding:
            label = f"{'new ' if change else ''}passphrase for {context.account!r}"
            kept = Secret(bytearray(passphrase), label=label)
            with self._hold_lock:
                self._all_held.add(kept)
            self._local.held[change] = kept
        return passphrase

    def __repr__(self) -> str:
        params = self._params
        configured = params.passphrase
        source = (
            "caller"
            if self._custom_source
            else str(configured)
            if configured is not None
            else "environment or terminal"
        )
        return (
            f"<PassphraseProvider argon2id memory_kib={params.memory_kib} "
            f"iterations={params.iterations} lanes={params.lanes}, passphrase from {source}>"
        )
