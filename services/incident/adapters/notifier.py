"""Notifications: a webhook with retries and a Slack-compatible payload, HMAC-signed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any, Protocol

import httpx
import orjson

from services.incident.domain.incident import Escalation
from shared.logging import get_logger, redact_url

log = get_logger(__name__)
EMOJI = {"critical": ":rotating_light:", "high": ":warning:", "medium": ":mag:", "low": ":information_source:"}


class Notifier(Protocol):
    async def notify(self, escalation: Escalation) -> None: ...


class NullNotifier:
    async def notify(self, escalation: Escalation) -> None:
        return None


def slack_payload(e: Escalation) -> dict[str, Any]:
    """Slack incoming-webhook shape (``text`` + ``blocks``) with the full escalation under ``bdguard``."""
    sev = e.severity.label
    return {
        "text": f"{EMOJI[sev]} [{sev.upper()}] {e.summary}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"Backdoor Guard: {sev} incident"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": e.summary}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                f"incident `{e.incident_id}` · action *{e.action}* · responders {', '.join(e.responders)}"}]},
        ],
        "bdguard": {"incident_id": e.incident_id, "model": e.model, "version": e.version, "severity": sev,
                    "action": e.action, "confidence": e.confidence, "respond_by": e.respond_by,
                    "responders": list(e.responders), "alert_ids": list(e.alert_ids)},
    }


class WebhookNotifier:
    """POST to each URL; retries with exponential back-off on connection errors and 5xx/429."""

    def __init__(self, urls: list[str], *, secret: str = "", retries: int = 4, backoff_s: float = 0.2,
                 timeout_s: float = 5.0) -> None:
        self.urls, self.secret, self.retries = urls, secret.encode(), retries
        self.backoff_s, self.timeout_s = backoff_s, timeout_s

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.secret:
            headers["x-bdguard-signature"] = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return headers

    async def notify(self, escalation: Escalation) -> None:
        body = orjson.dumps(slack_payload(escalation))
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            for url in self.urls:
                await self._post(client, url, body)

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes) -> bool:
        for attempt in range(self.retries + 1):
            try:
                response = await client.post(url, content=body, headers=self._headers(body))
                if response.status_code < 500 and response.status_code != 429:
                    return response.is_success
            except httpx.TransportError as exc:
                log.warning("webhook unreachable", url=redact_url(url), attempt=attempt, error=type(exc).__name__)
            await asyncio.sleep(self.backoff_s * 2**attempt)
        log.error("webhook gave up", url=redact_url(url), attempts=self.retries + 1)
        return False
