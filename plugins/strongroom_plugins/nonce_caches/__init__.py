"""First-party nonce caches: ``memory`` for one server process."""
