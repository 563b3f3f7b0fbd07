"""``bdguard``: the one command line of Backdoor Guard."""

from __future__ import annotations

import importlib

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


def main() -> None:
    configure_logging()
    build_app()()
