"""Telling inference servers which version to serve after the ledger moved the production alias."""

from __future__ import annotations

from typing import Protocol

import httpx

from shared.ledger.model import ModelVersion
from shared.logging import get_logger, redact_url

log = get_logger(__name__)


class ServingControl(Protocol):
    async def switch(self, target: ModelVersion) -> None: ...

    async def divert(self, model: str, reason: str) -> None: ...


class NoServing:
    """Default: the ledger's production alias is the only source of truth (servers poll it)."""

    async def switch(self, target: ModelVersion) -> None:
        return None

    async def divert(self, model: str, reason: str) -> None:
        return None


class HttpServingControl:
    """POSTs to each reference inference server's admin endpoint; a dead server is logged, not fatal."""

    def __init__(self, urls: list[str], timeout_s: float = 5.0, admin_token: str = "") -> None:
        self.urls = urls
        self.timeout_s = timeout_s
        self.headers = {"x-admin-token": admin_token} if admin_token else {}

    async def _post(self, path: str, payload: dict[str, str]) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers) as client:
            for url in self.urls:
                try:
                    (await client.post(url.rstrip("/") + path, json=payload)).raise_for_status()
                except httpx.HTTPError as exc:  # str(exc) would repeat the full URL
                    status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
                    log.error("serving switch failed", url=redact_url(url), error=type(exc).__name__, status=status)

    async def switch(self, target: ModelVersion) -> None:
        path = target.artifact_uri.removeprefix("file://")
        await self._post("/admin/model", {"model_path": path, "version": target.version})

    async def divert(self, model: str, reason: str) -> None:
        await self._post("/admin/divert", {"model": model, "reason": reason})
