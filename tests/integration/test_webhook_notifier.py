"""Incident notifications against a real local HTTP server: retries, Slack-compatible body, HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.incident.adapters.notifier import WebhookNotifier
from services.incident.domain.incident import Escalation
from services.incident.domain.severity import Severity

SECRET = "s3cret"


class Receiver:
    """A webhook endpoint that fails the first ``failures`` deliveries with 503."""

    def __init__(self, failures: int) -> None:
        self.failures, self.bodies, self.signatures = failures, [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.bodies.append(body)
                receiver.signatures.append(self.headers.get("x-bdguard-signature"))
                status = 503 if len(receiver.bodies) <= receiver.failures else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    r = Receiver(getattr(request, "param", 0))
    yield r
    r.server.shutdown()


def _escalation() -> Escalation:
    return Escalation("inc-1", "digits", "4", Severity.CRITICAL, "rollback", 0.97,
                      "critical incident on digits/4: targeted_misclassification", 1000.0,
                      ("ml-security-oncall", "ciso"), ("a-1", "a-2"))


@pytest.mark.parametrize("receiver", [2], indirect=True)
async def test_a_failing_webhook_is_retried_until_it_accepts(receiver: Receiver) -> None:
    await WebhookNotifier([receiver.url], secret=SECRET, retries=4, backoff_s=0.01).notify(_escalation())
    assert len(receiver.bodies) == 3
    assert len(set(receiver.bodies)) == 1  # the same delivery each time


async def test_the_payload_is_slack_compatible_and_signed(receiver: Receiver) -> None:
    await WebhookNotifier([receiver.url], secret=SECRET, backoff_s=0.01).notify(_escalation())
    [body] = receiver.bodies
    payload = json.loads(body)
    assert payload["text"].startswith(":rotating_light: [CRITICAL]")
    assert payload["blocks"][0]["type"] == "header"
    assert payload["bdguard"]["responders"] == ["ml-security-oncall", "ciso"]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert receiver.signatures == [expected]


@pytest.mark.parametrize("receiver", [99], indirect=True)
async def test_a_dead_webhook_gives_up_after_the_retry_budget_without_raising(receiver: Receiver) -> None:
    await WebhookNotifier([receiver.url], retries=2, backoff_s=0.01).notify(_escalation())
    assert len(receiver.bodies) == 3
