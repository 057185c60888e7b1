"""Signed requests and responses: HMAC-SHA256 over a canonical string, per device key.

=================  ==============================================================
``canonical``      the canonical request and response strings (``docs/formats.md``)
``headers``        header names and the syntax of their values
``keying``         the MAC key, derived from the ``signing`` keyset, and its key id
``signer``         the client: ``sign_request``, ``check_response``, the hook plugin
``verifier``       the server, framework-neutral: ``RequestVerifier``, ``KeyRing``
=================  ==============================================================

Nothing is imported here: a stack imports the part it uses when it uses it.
"""
