"""Integrations built on strongroom's public API: ASGI middleware, a reference
sync server and logging helpers.  Nothing here is imported by the core."""
