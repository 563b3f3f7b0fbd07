"""A small message bus in the cosmicpython style.

Commands (imperative: ``RollbackModel``) have exactly one handler and may fail; events (past tense:
``RollbackCompleted``) have zero or more handlers, and a failing one is logged, not fatal. Handlers
may return further messages, which are handled in turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from shared.logging import get_logger

log = get_logger(__name__)

Message = Any
Handler = Callable[[Any], Awaitable[Iterable[Message] | None]]


class Command:
    """Marker base for commands (frozen dataclasses)."""


class Event:
    """Marker base for domain events (frozen dataclasses)."""


class MessageBus:
    def __init__(self, command_handlers: dict[type, Handler], event_handlers: dict[type, list[Handler]]) -> None:
        self.command_handlers = command_handlers
        self.event_handlers = event_handlers

    async def handle(self, message: Message) -> list[Message]:
        """Handle a command or event and everything it leads to; returns all messages handled."""
        queue, handled = [message], []
        while queue:
            current = queue.pop(0)
            handled.append(current)
            if isinstance(current, Command):
                queue.extend(await self._command(current))
            elif isinstance(current, Event):
                queue.extend(await self._event(current))
            else:
                raise TypeError(f"{current!r} is neither a Command nor an Event")
        return handled

    async def _command(self, command: Command) -> list[Message]:
        handler = self.command_handlers.get(type(command))
        if handler is None:
            raise LookupError(f"no handler for command {type(command).__name__}")
        return list(await handler(command) or [])

    async def _event(self, event: Event) -> list[Message]:
        produced: list[Message] = []
        for handler in self.event_handlers.get(type(event), []):
            try:
                produced.extend(await handler(event) or [])
            except Exception:
                log.exception("event handler failed", event=type(event).__name__)
        return produced
