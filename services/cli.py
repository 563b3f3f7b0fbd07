"""``bdguard``: the one command line of Backdoor Guard."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import sqlalchemy.exc
import typer

from shared.logging import configure_logging

app = typer.Typer(name="bdguard", help="Backdoor Guard — EN 18031 6.3.8 model backdoor prevention.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

# each module exposes register(app); a service that is not installed simply adds no commands
CLI_MODULES = (
    "services.admin_cli",
    "services.registry.entrypoints.cli",
    "services.incident.entrypoints.cli",
    "services.supply_chain.entrypoints.cli",
    "services.scanner.entrypoints.cli",
    "services.remediation.entrypoints.cli",
)


_registered: set[str] = set()


def build_app() -> typer.Typer:
    """Register every installed service's commands once (calling it again is a no-op)."""
    for name in CLI_MODULES:
        if name in _registered:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(app)
        _registered.add(name)
    return app


def _store_problem(exc: Exception) -> str | None:
    """A one-line reason for a store that is not set up or not reachable, or ``None``."""
    if isinstance(exc, sqlalchemy.exc.ArgumentError):
        return f"BDGUARD_DATABASE_URL cannot be used: {exc}"
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.ProgrammingError):
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc).splitlines()[0]
        if "no such table" in reason or ("relation" in reason and "does not exist" in reason):
            return f"the store (BDGUARD_DATABASE_URL) is not set up ({reason}): run `bdguard db upgrade` first"
        return f"the store (BDGUARD_DATABASE_URL) cannot be used: {reason}"
    return None


def main() -> None:
    """The ``bdguard`` entry point: commands map their own errors to exit codes; what escapes them (a store
    that is not set up, an unanticipated bug) still ends in one line on stderr and exit 2, no traceback."""
    configure_logging()
    try:
        build_app()()
    except Exception as exc:
        if os.environ.get("BDGUARD_DEBUG"):
            traceback.print_exception(exc)
        problem = _store_problem(exc)
        message = (f"error: {problem}" if problem else
                   f"internal error: {type(exc).__name__}: {exc} (set BDGUARD_DEBUG=1 for the traceback)")
        print(message.splitlines()[0], file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
