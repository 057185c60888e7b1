"""AEAD cipher suites for the ``strongroom.cipher_suites`` slot."""
