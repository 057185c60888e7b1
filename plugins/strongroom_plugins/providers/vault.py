"""The ``vault`` key provider: HashiCorp Vault or OpenBao Transit wraps the master key.

Needs the ``vault`` extra (hvac).  Each account has its own Transit key,
``{key_prefix}{account}`` on the ``mount`` engine (``strongroom-alice`` on
``transit`` by default), an ``aes256-gcm96`` key created non-exportable on
the first wrap.  The key never leaves Vault: wrapping is Transit
``encrypt``, unwrapping ``decrypt``, and the blob (format in
:mod:`strongroom_plugins.providers._vault_blob`) is worthless without it.
``destroy`` deletes the key: what it wrapped is then gone (crypto-shredding).

**Binding the wrap context.**  ``binding = "context"`` (the default) creates
the key with ``derived = true`` and sends the encoded
:class:`~strongroom.key_provider.WrapContext` as Transit's ``context``: each
context gets its own HKDF-derived key, so a wrap opens under no other
context.  ``binding = "associated_data"`` sends it as GCM associated data
to a non-derived key instead.  The derived form is the default because
Transit's ``rewrap`` takes a ``context`` but no ``associated_data`` (checked
against OpenBao 2.7): only derived wraps can be moved to a new key version
inside Vault.  A key of the wrong kind (not derived in ``context`` mode,
exportable, not an AEAD) is refused at wrap time, never used with the
binding silently dropped.

**Provider rotation.**  ``strongroom keys rotate --provider NAME`` calls
:meth:`VaultProvider.rotate_root`: Transit rotates the key to a new version
and ``rewrap`` moves the existing blob to it server-side, so the master key
is not sent anywhere.  In ``associated_data`` mode ``rotate_root`` declines
and :meth:`VaultProvider.rewrap` rotates the key and wraps the master key
afresh with ``encrypt`` (as does ``keys rotate --provider NAME --master``);
so does a lost root (the key deleted, the wrap's version retired), which is
how ``strongroom recover --enrol NAME`` re-enrols this provider.  An operator who
raises the key's ``min_decryption_version`` after rotating makes older
copies of the wrap unusable; such a wrap is reported as the provider's
key being unusable, not as a wrong secret.

**Rollback protection.**  The key record's generation is kept in a KV v2
entry, ``{generation_mount}/{generation_path}/{key name}`` (``secret`` and
``strongroom/generation`` by default), raised with check-and-set writes
only; ``generation_mount = ""`` keeps none.  Anyone holding a token allowed
to write that entry can lower it: the protection is against a restored
``keys.json``, not against Vault's own administrators.

**Errors**, one line each, exit 4: unreachable, TLS refused, timed out or
sealed (:class:`~strongroom.errors.ProviderUnreachableError`); token revoked,
expired or not allowed (:class:`~strongroom.errors.UnlockFailedError`); the
Transit key deleted or the wrap's version below ``min_decryption_version``
(:class:`~strongroom.errors.ProviderKeyLostError`: the provider's key is
unusable, not a wrong secret; the key hierarchy then names the recovery
command when the account has a recovery provider).  An altered wrap or another context is
the detail-free :class:`~strongroom.errors.AuthenticationError`.

Policy the token needs (``strongroom-`` prefix, default mounts)::

    path "transit/keys/strongroom-*"          { capabilities = ["create", "read", "update", "delete"] }
    path "transit/keys/strongroom-*/*"        { capabilities = ["update"] }   # rotate, config
    path "transit/encrypt/strongroom-*"       { capabilities = ["update"] }
    path "transit/decrypt/strongroom-*"       { capabilities = ["update"] }
    path "transit/rewrap/strongroom-*"        { capabilities = ["update"] }
    path "secret/data/strongroom/generation/*"     { capabilities = ["create", "read", "update"] }
    path "secret/metadata/strongroom/generation/*" { capabilities = ["delete"] }
"""  # noqa: E501 - policy lines read best unbroken

from __future__ import annotations

import base64
import re
from typing import Any, Final

import hvac.exceptions as vault_errors

from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyUnavailableError,
    ProviderKeyLostError,
    ProviderUnreachableError,
    StrongroomError,
    UsageError,
)
from strongroom.key_provider import KeyProvider, KeyProviderTraits, WrapContext
from strongroom_plugins.providers._vault_blob import TransitWrap
from strongroom_plugins.providers._vault_client import VaultConnection
from strongroom_plugins.providers._vault_settings import Binding, VaultSettings

__all__ = ["VaultProvider", "VaultSettings"]

#: Transit's key-name rule (``framework.GenericNameRegex``).
_KEY_NAME = re.compile(r"\w(?:[\w.@-]*\w)?", re.ASCII)
_GENERATION = re.compile(r"[0-9]{1,19}")
#: Transit key types whose AEAD takes associated data and supports derivation.
_AEAD_TYPES: Final = frozenset({"aes128-gcm96", "aes256-gcm96", "chacha20-poly1305"})
_CAS_ATTEMPTS = 5


class VaultProvider(KeyProvider[VaultSettings]):
    """Wraps under a per-account Transit key that never leaves Vault or OpenBao."""

    Settings = VaultSettings
    traits = KeyProviderTraits(
        non_exportable_root=True, needs_user_presence=False, survives_reinstall=True
    )

    def __init__(self, settings: VaultSettings | None = None) -> None:
        super().__init__(settings)
        self._params = self.settings
        self._vault = VaultConnection(self._params)

    def key_name(self, account: str) -> str:
        """The Transit key that wraps ``account``'s secrets.

        :raises strongroom.errors.UsageError: the account name cannot name a Transit key.
        """
        name = f"{self._params.key_prefix}{account}"
        if _KEY_NAME.fullmatch(name) is None:
            raise UsageError(f"account {account!r} cannot name a Transit key")
        return name

    # wrapping

    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Encrypt ``secret`` with the account's Transit key, creating the key when missing.

        :raises strongroom.errors.KeyUnavailableError: the key is of a kind
            that cannot bind the context, or the engine is missing.
        :raises strongroom.errors.ProviderUnreachableError: Vault is unreachable or sealed.
        :raises strongroom.errors.UnlockFailedError: the token was refused.
        """
        name = self.key_name(context.account)
        self._ensure_key(name, self._params.binding)
        return self._encrypt(name, secret, context)

    def rewrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Rotate the account's Transit key, then encrypt ``secret`` under its new version.

        The fallback of :meth:`rotate_root` for ``associated_data`` wraps, and
        what a master rotation that renews this provider's root calls.

        :raises strongroom.errors.KeyUnavailableError: as :meth:`wrap`.
        """
        name = self.key_name(context.account)
        if not self._ensure_key(name, self._params.binding):  # a new key is new enough
            self._rotate(name)
        return self._encrypt(name, secret, context)

    def _encrypt(self, name: str, secret: bytes, context: WrapContext) -> bytes:
        binding = self._params.binding
        plaintext = base64.b64encode(secret).decode("ascii")
        answer = self._transit(
            "encrypt",
            name,
            lambda c: c.secrets.transit.encrypt_data(
                name,
                plaintext=plaintext,
                mount_point=self._params.mount,
                **_bound(binding, context),
            ),
        )
        return TransitWrap.from_transit(binding, answer["data"].get("ciphertext")).to_blob()

    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        """Decrypt ``blob`` with the account's Transit key.

        :raises strongroom.errors.IntegrityError: ``blob`` is not a Vault wrap.
        :raises strongroom.errors.AuthenticationError: it was altered, or
            wrapped under another context or key.
        :raises strongroom.errors.KeyUnavailableError: the Transit key was
            deleted, or no longer decrypts the wrap's version.
        :raises strongroom.errors.ProviderUnreachableError: Vault is unreachable or sealed.
        :raises strongroom.errors.UnlockFailedError: the token was refused.
        """
        wrap = TransitWrap.from_blob(blob)
        name = self.key_name(context.account)
        answer = self._transit(
            "decrypt",
            name,
            lambda c: c.secrets.transit.decrypt_data(
                name,
                ciphertext=wrap.to_transit(),
                mount_point=self._params.mount,
                **_bound(wrap.binding, context),
            ),
            wrap=wrap,
        )
        try:
            return base64.b64decode(answer["data"]["plaintext"], validate=True)
        except (KeyError, TypeError, ValueError):
            where = self._vault.where
            raise ProviderUnreachableError(f"{where} answered without a plaintext") from None

    def rotate_root(self, blob: bytes, context: WrapContext) -> bytes | None:
        """Rotate the account's Transit key; re-wrap ``blob`` to the new version inside Vault.

        Returns ``None`` for an ``associated_data`` wrap, which Transit cannot
        re-wrap, and for a lost root (the key deleted, the wrap's version
        retired): the key hierarchy then calls :meth:`rewrap`, which rotates
        or re-creates the key and encrypts afresh.  That is how ``strongroom
        recover --enrol`` re-enrols this provider.

        :raises strongroom.errors.IntegrityError: ``blob`` is not a Vault wrap.
        :raises strongroom.errors.AuthenticationError: it does not open under this key.
        :raises strongroom.errors.KeyUnavailableError: as :meth:`unwrap`.
        """
        wrap = TransitWrap.from_blob(blob)
        if wrap.binding != "context":
            return None
        name = self.key_name(context.account)
        mount = self._params.mount
        try:
            self._rotate(name)
            answer = self._transit(
                "rewrap",
                name,
                lambda c: c.secrets.transit.rewrap_data(
                    name, wrap.to_transit(), mount_point=mount, **_bound("context", context)
                ),
                wrap=wrap,
            )
        except ProviderKeyLostError:
            return None  # nothing left to re-wrap from: wrap afresh
        return TransitWrap.from_transit("context", answer["data"].get("ciphertext")).to_blob()

    def _rotate(self, name: str) -> None:
        mount = self._params.mount
        self._transit(
            "rotate", name, lambda c: c.secrets.transit.rotate_key(name, mount_point=mount)
        )

    def destroy(self, account: str) -> None:
        """Delete the account's Transit key, then its kept generation; quiet when absent.

        :raises strongroom.errors.KeyUnavailableError: Vault refused or cannot be reached.
        """
        name = self.key_name(account)
        mount = self._params.mount
        if self._read_key(name) is not None:
            self._transit(
                "allow deletion",
                name,
                lambda c: c.secrets.transit.update_key_configuration(
                    name, deletion_allowed=True, mount_point=mount
                ),
            )
            self._transit("delete", name, lambda c: c.secrets.transit.delete_key(name, mount))
        if self._params.generation_mount:
            try:
                self._vault.run(
                    "deleting the kept generation",
                    lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(
                        self._generation_path(account), mount_point=self._params.generation_mount
                    ),
                )
            except vault_errors.InvalidPath as exc:
                self._check_kv_mount(exc)

    # rollback protection

    def record_generation(self, account: str, generation: int) -> None:
        """Raise the generation kept for ``account`` to ``generation`` (check-and-set); never lower.

        :raises strongroom.errors.KeyUnavailableError: Vault refused or cannot be reached.
        :raises strongroom.errors.IntegrityError: the kept value is malformed.
        """
        if generation < 0:
            raise ValueError("a key-record generation is not negative")
        if not self._params.generation_mount:
            return
        path = self._generation_path(account)
        for _attempt in range(_CAS_ATTEMPTS):
            kept, version = self._kept(account)
            if kept is not None and kept >= generation:
                return
            try:
                self._vault.run(
                    "keeping the generation",
                    lambda c: c.secrets.kv.v2.create_or_update_secret(
                        path,
                        {"generation": str(generation)},
                        cas=version,  # noqa: B023 - called at once, in this iteration
                        mount_point=self._params.generation_mount,
                    ),
                )
            except vault_errors.InvalidRequest as exc:
                if "check-and-set" not in str(exc):
                    raise ProviderUnreachableError(
                        f"{self._vault.where} did not keep the key-record generation"
                    ) from exc
                continue  # another process wrote meanwhile: compare again
            except vault_errors.InvalidPath as exc:
                self._check_kv_mount(exc)
                raise
            return
        raise ProviderUnreachableError(
            f"{self._vault.where}: the key-record generation for {account!r} keeps changing"
        )

    def recorded_generation(self, account: str) -> int | None:
        """The generation kept for ``account``, or ``None``.

        :raises strongroom.errors.KeyUnavailableError: Vault refused or cannot be reached.
        :raises strongroom.errors.IntegrityError: the kept value is malformed.
        """
        if not self._params.generation_mount:
            return None
        return self._kept(account)[0]

    def _kept(self, account: str) -> tuple[int | None, int]:
        """``(generation or None, KV version to check-and-set against)``."""
        path = self._generation_path(account)
        try:
            answer = self._vault.run(
                "reading the kept generation",
                lambda c: c.secrets.kv.v2.read_secret_version(
                    path, mount_point=self._params.generation_mount, raise_on_deleted_version=False
                ),
            )
        except vault_errors.InvalidPath as exc:
            self._check_kv_mount(exc)
            return None, 0
        body: dict[str, Any] = answer.get("data") or {}
        version = (body.get("metadata") or {}).get("version")
        stored = (body.get("data") or {}).get("generation")
        if not isinstance(version, int):
            raise IntegrityError(f"{self._where_kept(path)} has no KV version")
        if stored is None:
            return None, version  # deleted with `kv delete`: start again from this version
        if not isinstance(stored, str) or _GENERATION.fullmatch(stored) is None:
            raise IntegrityError(f"{self._where_kept(path)} does not hold a key-record generation")
        return int(stored), version

    def _generation_path(self, account: str) -> str:
        return f"{self._params.generation_path}/{self.key_name(account)}"

    def _where_kept(self, path: str) -> str:
        return f"{self._vault.where}: the entry {self._params.generation_mount}/{path}"

    def _check_kv_mount(self, exc: vault_errors.InvalidPath) -> None:
        """A 404 is an absent entry, unless the KV engine itself is missing."""
        if "no handler for route" in str(exc):
            raise KeyUnavailableError(
                f"{self._vault.where} has no KV v2 engine at {self._params.generation_mount!r} "
                "to keep the key-record generation in (set generation_mount)"
            ) from exc

    # Transit

    def _ensure_key(self, name: str, binding: Binding) -> bool:
        """Create the key if missing (``True``); refuse one that cannot bind or is exportable."""
        key = self._read_key(name)
        created = key is None
        if key is None:
            self._transit(
                "create",
                name,
                lambda c: c.secrets.transit.create_key(
                    name,
                    key_type="aes256-gcm96",
                    derived=binding == "context",
                    exportable=False,
                    mount_point=self._params.mount,
                ),
            )
            key = self._read_key(name)
            if key is None:
                raise ProviderUnreachableError(f"{self._vault.where} did not keep the new key")
        problem = ""
        if key.get("type") not in _AEAD_TYPES:
            problem = f"is of type {key.get('type')!r}, not an AEAD"
        elif key.get("exportable"):
            problem = "is exportable; strongroom needs a key that never leaves Vault"
        elif bool(key.get("derived")) != (binding == "context"):
            problem = (
                "is not derived; set binding = 'associated_data' or create it with derived=true"
                if binding == "context"
                else "is derived; set binding = 'context'"
            )
        if problem:
            raise KeyUnavailableError(f"{self._key_where(name)} {problem}")
        return created

    def _read_key(self, name: str) -> dict[str, Any] | None:
        mount = self._params.mount
        try:
            answer = self._transit(
                "read", name, lambda c: c.secrets.transit.read_key(name, mount_point=mount)
            )
        except _Absent:
            return None
        data: dict[str, Any] = answer.get("data") or {}
        return data

    def _transit(
        self, action: str, name: str, call: Any, *, wrap: TransitWrap | None = None
    ) -> dict[str, Any]:
        """Run a Transit request on key ``name``, translating Transit's own refusals."""
        try:
            answer: dict[str, Any] = self._vault.run(f"Transit {action} on {name!r}", call)
        except (vault_errors.InvalidRequest, vault_errors.InvalidPath) as exc:
            raise self._refusal(action, name, exc, wrap) from exc
        return answer or {}

    def _refusal(
        self, action: str, name: str, exc: vault_errors.VaultError, wrap: TransitWrap | None
    ) -> StrongroomError:
        text = str(exc).lower()
        if "no handler for route" in text:
            return KeyUnavailableError(
                f"{self._vault.where} has no Transit engine at mount {self._params.mount!r}"
            )
        missing = isinstance(exc, vault_errors.InvalidPath) or any(
            words in text for words in ("key not found", "no existing key", "not found")
        )
        if action == "read" and missing:
            return _Absent()
        if missing:
            return ProviderKeyLostError(self._unusable(name, "no longer exists (it was deleted)"))
        if wrap is not None and "too old" in text:
            return ProviderKeyLostError(
                self._unusable(
                    name,
                    f"no longer decrypts its version {wrap.key_version} "
                    "(min_decryption_version was raised past it)",
                )
            )
        if action in {"decrypt", "rewrap"}:
            return AuthenticationError()
        return ProviderUnreachableError(f"{self._key_where(name)}: Transit refused to {action}")

    def _unusable(self, name: str, reason: str) -> str:
        return (
            f"the provider's key is unusable: {self._key_where(name)} {reason}, so this wrap "
            "cannot be opened through it; unlock with another provider of the account"
        )

    def _key_where(self, name: str) -> str:
        return f"Transit key {self._params.mount}/{name} on {self._vault.where}"

    def close(self) -> None:
        self._vault.close()

    def __repr__(self) -> str:
        return (
            f"<VaultProvider url={self._params.url!r} mount={self._params.mount!r} "
            f"key_prefix={self._params.key_prefix!r} binding={self._params.binding!r}>"
        )


class _Absent(StrongroomError):
    """Transit has no key of that name (only ever raised and caught here)."""


def _bound(binding: Binding, context: WrapContext) -> dict[str, str]:
    """The request field that binds ``context``: derived-key ``context`` or ``associated_data``."""
    encoded = base64.b64encode(context.encode()).decode("ascii")
    return {"context": encoded} if binding == "context" else {"associated_data": encoded}
