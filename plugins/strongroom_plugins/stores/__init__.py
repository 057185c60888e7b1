"""Stores for the ``strongroom.stores`` slot."""
