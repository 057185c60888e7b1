"""Development sessions: ``nox`` runs lint, typecheck, tests, the sample plugin, a bench smoke run.

``nox -s demo`` runs the main job, ``nox -s bench`` the benchmarks and rewrites
docs/benchmarks.md's tables and plot; ``bench_smoke`` (in the default run)
runs each benchmark once on small sizes, so they cannot rot.  Timings are
never pass/fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
SAMPLE_PLUGIN = ROOT / "tests" / "fixtures" / "sample_plugin"
SOURCES = ["core", "plugins", "contrib"]
#: What the benchmarks measure against, and what they run and plot with.
BENCH_DEPS = [
    "pytest-benchmark>=5", "tink>=1.16", "pyrage>=1.4", "pynacl>=1.5", "matplotlib>=3.8",
    "http-message-signatures>=0.6", "botocore>=1.34", "requests>=2.31",
]  # fmt: skip

nox.options.sessions = ["lint", "typecheck", "bench_smoke", "tests", "sample_plugin"]
nox.options.error_on_missing_interpreters = True


def install_editable(session: nox.Session, *extras: str) -> None:
    """The project from this checkout, editable, with ``extras``."""
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


def install_wheel(session: nox.Session, *extras: str) -> None:
    """The project as users get it: a built wheel, not this checkout."""
    dist = ROOT / ".nox" / "dist"
    session.run("python", "-m", "pip", "wheel", "--no-deps", "-w", str(dist), ".", silent=True)
    wheel = max(dist.glob("strongroom-*.whl"), key=lambda path: path.stat().st_mtime)
    session.install(f"{wheel}[{','.join(extras)}]" if extras else str(wheel))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the three source roots, the benchmarks and the sample plugin."""
    install_editable(session, "all", "test")
    session.install("mypy>=1.10", *BENCH_DEPS)
    session.run("mypy", *SOURCES, "bench")
    session.run("mypy", str(SAMPLE_PLUGIN / "src"))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, against real services; posargs go to pytest."""
    session.run("bash", ".ci/debian-packages", external=True)  # the services' binaries
    install_editable(session, "all", "test")
    session.run("pytest", *session.posargs)


@nox.session
def sample_plugin(session: nox.Session) -> None:
    """The third-party path: a separately built plugin, found, selected, conforming."""
    install_wheel(session, "all", "test")
    session.install(str(SAMPLE_PLUGIN), "pytest>=8")
    listing = session.run("strongroom", "plugins", "--check", silent=True)
    if not listing or "aes-256-gcm-siv" not in listing:
        session.error("strongroom plugins does not list the sample plugin's suite")
    session.run("strongroom", "config", "check", "--config", str(SAMPLE_PLUGIN / "strongroom.toml"))
    session.chdir(SAMPLE_PLUGIN)
    session.run("pytest", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: the embedded default stack, end to end."""
    install_wheel(session, "all")
    session.run("strongroom", "demo", *session.posargs)


def run_bench(session: nox.Session, results: Path, *args: str) -> None:
    """pytest-benchmark over bench/, against strongroom as installed from a wheel.

    ``-o pythonpath=`` keeps the checkout's source roots off ``sys.path``; bench/
    itself is importable as the package ``bench`` from the project root.  The
    stores are made beside the results, not in ``/tmp``, where test and
    benchmark runs make and remove hundreds of thousands of files: creating
    one there took 300-700 µs against 20-50 µs elsewhere on the same disk,
    and the files store's puts measured that.  They are removed when the run
    ends rather than when the next one starts, before its first puts.
    """
    session.run("bash", ".ci/debian-packages", external=True)  # the unlock benchmark's services
    install_wheel(session, "all", "test")  # test: the OpenBao server binary
    session.install(*BENCH_DEPS)
    results.parent.mkdir(parents=True, exist_ok=True)
    temp = results.with_name("tmp")
    try:
        session.run(
            "pytest", "bench", "-o", "pythonpath=", "-p", "no:cacheprovider",
            f"--basetemp={temp}", f"--benchmark-json={results}", *args,
        )  # fmt: skip
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with their references; rewrites docs/benchmarks.md's tables and plot.

    Only a run without posargs rewrites the docs.  With any (``-- --quick`` for the smoke
    run, ``-- -k records``, ``-- --benchmark-max-time=2``) the JSON and the report go to
    build/bench-partial/ instead, so a partial run never replaces the page's tables.
    """
    partial = bool(session.posargs)
    results = ROOT / "build" / ("bench-partial" if partial else "bench") / "results.json"
    run_bench(session, results, *session.posargs)
    page = results.with_name("benchmarks.md") if partial else ROOT / "docs" / "benchmarks.md"
    session.run("python", "-m", "bench.report", str(results), str(page))


@nox.session
def bench_smoke(session: nox.Session) -> None:
    """Every benchmark once, on small sizes, and the report from it: seconds, no timings."""
    results = ROOT / "build" / "bench-quick" / "results.json"
    run_bench(session, results, "--quick", "-q", *session.posargs)
    session.run(
        "python", "-m", "bench.report", str(results), str(results.with_name("benchmarks.md"))
    )
