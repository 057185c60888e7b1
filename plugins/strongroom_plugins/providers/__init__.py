"""Key providers for the ``strongroom.key_providers`` slot.

``passphrase``
    A key-encryption key derived from the user's passphrase with Argon2id
    (:mod:`strongroom_plugins.providers.passphrase`).  No extra needed.
``keyring``
    A random key-encryption key kept in the OS keyring through the
    ``keyring`` library (:mod:`strongroom_plugins.providers.os_keyring`,
    the ``keyring`` extra).
``vault``
    A per-account Transit key in HashiCorp Vault or OpenBao that never
    leaves it (:mod:`strongroom_plugins.providers.vault`, the ``vault``
    extra); keeps the key record's generation in a KV v2 entry.

``passphrase`` and ``keyring`` seal the secret with AES-256-GCM in the envelope described in
:mod:`strongroom_plugins.providers._wrapping`.  Only ``keyring`` keeps the
key record's generation beside its root, and so protects against a key
record rolled back; ``passphrase`` keeps no state.  This package imports none of
its modules, so loading one provider never imports the other's library.
"""
