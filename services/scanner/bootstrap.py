"""Composition root of the scanner service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from services.scanner.config import ScannerSettings
from services.scanner.service_layer.handlers import ScanOutcome, admit, record_scan
from shared.contracts.records import ScanRequested
from shared.db.unit_of_work import SqlUnitOfWork, uow_factory_for
from shared.files import local_path, sha256_file
from shared.ledger.model import DEPLOYABLE
from shared.logging import get_logger
from shared.messaging.delivery import Delivery
from shared.messaging.outbox import OutboxRelay
from shared.messaging.publisher import Publisher

log = get_logger(__name__)
PRODUCER = "scanner"
Scanner = Callable[[Path, Path, Path, Path | None], ScanOutcome]  # model, clean data, report base, baseline


def onnx_scanner(settings: ScannerSettings) -> Scanner:
    """The real scan: detectors over onnxruntime, JSON + HTML reports written next to each other."""

    def scan(model_path: Path, clean_path: Path, report_base: Path, baseline: Path | None) -> ScanOutcome:
        from services.scanner.adapters.reports import (
            baseline_l1,
            report_dict,
            write_html,
            write_json,
            write_triggers,
        )
        from services.scanner.service_layer.scan import BaselineMismatch, ScanConfig, scan_model_file

        began = time.perf_counter()
        params = {"neural_cleanse.v2": {"baseline_l1": baseline_l1(baseline)}} if baseline else {}
        config = ScanConfig(detectors=settings.detectors, seed=settings.seed, params=params,
                            budget_scale=settings.budget_scale, max_array_bytes=settings.max_array_bytes)
        try:
            verdict = scan_model_file(model_path, clean_path, config)
        except BaselineMismatch as exc:  # the new version changed its classes: no earlier version compares
            config = replace(config, params={})
            verdict = scan_model_file(model_path, clean_path, config)
            verdict = replace(verdict, notes=[*verdict.notes, f"earlier version's report {baseline} not used as "
                                              f"the baseline: {exc}"])
            baseline = None
        report = report_dict(verdict, {"model_path": str(model_path), "clean_data": str(clean_path),
                                       "baseline_report": None if baseline is None else str(baseline)})
        report_base.parent.mkdir(parents=True, exist_ok=True)
        write_json(report, report_base.with_suffix(".json"))
        write_html(report, report_base.with_suffix(".html"))
        write_triggers(verdict, report_base.with_suffix(".triggers.npz"))  # feeds the telemetry trigger library
        return ScanOutcome(verdict.backdoor_detected, verdict.confidence, list(verdict.target_classes),
                           [_wire(r.to_dict()) for r in verdict.results], time.perf_counter() - began,
                           report_base.with_suffix(".json").resolve().as_uri(), notes=list(verdict.notes))

    return scan


def _wire(result: dict[str, Any]) -> dict[str, Any]:
    """Detector results for the bus: images stay in the report (report_uri), not in every message."""
    return {k: v for k, v in result.items() if k != "triggers_png_base64"}


@dataclass
class ScannerService:
    settings: ScannerSettings
    uow_factory: Callable[[], SqlUnitOfWork]
    relay: OutboxRelay
    scanner: Scanner

    async def on_scan_requested(self, delivery: Delivery) -> None:
        request = delivery.record
        assert isinstance(request, ScanRequested)
        if not admit(request, delivery.attrs.id, self.uow_factory()):
            return
        outcome = await asyncio.to_thread(self._scan, request)
        status = record_scan(request, outcome, delivery.attrs.id, self.uow_factory())
        await self.relay.flush()
        log.info("scan recorded", status=status.value, confidence=outcome.confidence, error=outcome.error)

    def _scan(self, request: ScanRequested) -> ScanOutcome:
        """Re-check the bytes (they may have changed since validation), then scan; failures are outcomes."""
        began = time.perf_counter()
        model_path = local_path(request.artifact_uri)
        clean = local_path(request.clean_data_uri) if request.clean_data_uri else self.settings.default_clean_data
        try:
            if sha256_file(model_path) != request.artifact_digest:
                raise ValueError("artifact changed after supply-chain validation (digest mismatch)")
            if clean is None:
                raise ValueError("no clean data: the request names none and no default is configured")
            base = self.settings.reports_dir / request.model / request.version / "scan"
            return self.scanner(model_path, Path(clean), base, self._baseline_report(request))
        except Exception as exc:  # a model that breaks the scanner is quarantined, never waved through
            log.warning("scan failed", error=str(exc))
            return ScanOutcome(False, 0.0, [], [], time.perf_counter() - began, None, f"{type(exc).__name__}: {exc}")


    def _baseline_report(self, request: ScanRequested) -> Path | None:
        """The scan report of the latest earlier clean version: its per-class trigger sizes are a far
        better reference for Neural Cleanse than the median over one model's own classes."""
        if not self.settings.use_previous_version_baseline:
            return None
        with self.uow_factory() as uow:
            earlier = [v for v in uow.ledger.list(request.model)
                       if v.version != request.version and v.status in DEPLOYABLE
                       and isinstance(v.details.get("scan"), dict) and v.details["scan"].get("report_uri")]
        for mv in sorted(earlier, key=lambda v: v.created_at, reverse=True):
            path = local_path(mv.details["scan"]["report_uri"])
            if path.is_file():
                return path
        return None


def bootstrap(settings: ScannerSettings, publisher: Publisher, *,
              uow_factory: Callable[[], SqlUnitOfWork] | None = None,
              scanner: Scanner | None = None) -> ScannerService:
    if uow_factory is None:
        uow_factory = uow_factory_for(settings.database_url, PRODUCER, SqlUnitOfWork)
    return ScannerService(settings, uow_factory, OutboxRelay(uow_factory, publisher), scanner or onnx_scanner(settings))
