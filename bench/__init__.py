"""strongroom's benchmarks: pytest-benchmark, side by side with the references.

``pytest bench`` measures; ``python -m bench.report`` turns its JSON into the
tables of ``docs/benchmarks.md`` and the plot.  See ``nox -s bench``.
"""
