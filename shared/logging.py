"""structlog set-up: JSON off a TTY, pretty on one; correlation ids bound per message via contextvars."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog

SECRET_KEYS = frozenset({"password", "secret", "token", "private_key", "api_key", "authorization"})


def _redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if any(word in key.lower() for word in SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


def redact_url(url: str) -> str:
    """Scheme and host only: a webhook URL's path or query is often its credential (Slack's is)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/***"


class _CurrentStderr:
    """A structlog logger writing to whatever ``sys.stderr`` is when it is called, not the stream of the day
    logging was configured (a command run in-process by a test, or a stream replaced later, would leave every
    later log line aimed at a closed file)."""

    _lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _current_stderr(*_args: Any) -> _CurrentStderr:
    return _CurrentStderr()


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and stdlib logging once per process (never at import time)."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_current_stderr,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    for noisy in ("aiokafka", "faust", "mode", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def bind_message_context(**values: Any) -> None:
    """Bind correlation id, model, version… for the message being handled (cleared per message)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
