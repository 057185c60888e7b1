"""First-party server storage: ``sqlite`` for one process, ``postgresql`` for several hosts."""
