"""Transports for the ``strongroom.transports`` slot."""
