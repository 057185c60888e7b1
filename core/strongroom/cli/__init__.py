"""The ``strongroom`` command-line interface; see ``docs/cli.md``."""
