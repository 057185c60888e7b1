"""Development sessions: ``nox`` runs lint, typecheck, tests and the sample plugin.

``nox -s demo`` runs the main job, ``nox -s bench`` the benchmarks (not part
of the default run: timings are never pass/fail).
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
SAMPLE_PLUGIN = ROOT / "tests" / "fixtures" / "sample_plugin"
SOURCES = ["core", "plugins", "contrib"]

nox.options.sessions = ["lint", "typecheck", "tests", "sample_plugin"]
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
    """mypy --strict over the three source roots and the sample plugin."""
    install_editable(session, "all", "test")
    session.install("mypy>=1.10")
    session.run("mypy", *SOURCES)
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


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with reference libraries; writes docs/benchmarks.md and .png.

    The references (tink's streaming AEAD, age through pyrage) and matplotlib for
    the plot are installed here only.  ``nox -s bench -- --quick`` is a smoke run.
    """
    install_wheel(session, "all")
    session.install("tink>=1.16", "pyrage>=1.4", "matplotlib>=3.8")
    session.run("python", "bench/run.py", "--output", "docs/benchmarks.md", *session.posargs)
