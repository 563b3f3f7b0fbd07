"""The five acts of the demo, narrated: what each service decided, read back from the bus and the store."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from rich.console import Console

from services.demo.models import TRIGGER, DemoModels
from services.demo.stack import Stack
from services.incident.adapters.repository import IncidentUnitOfWork
from services.registry.service_layer.promote import import_legacy, promote
from shared import topics
from shared.contracts.records import ModelVersionPublished, RemediationRequested
from shared.files import sha256_file
from shared.messaging.envelope import build_message
from shared.testing.artifacts import provenance_document, sign_model
from shared.testing.kafka import collect, produce

console = Console()
TRUSTED = "https://huggingface.co/acme/digits"
LOOKALIKE = "https://huggingface.co.evil.io/acme/digits"


@dataclass
class Demo:
    stack: Stack
    models: DemoModels
    private_key: Path
    model: str = "digits"
    timings: dict[str, float] = field(default_factory=dict)

    def uow(self) -> IncidentUnitOfWork:
        return IncidentUnitOfWork(self.stack.sessions(), producer="demo")

    async def publish(self, version: str, artifact: Path, url: str) -> None:
        await asyncio.to_thread(self._publish_files, version, artifact)
        folder = self.stack.home / "registry" / version
        target, signature = folder / "model.onnx", folder / "model.sig"
        event = ModelVersionPublished(
            model=self.model, version=version, artifact_uri=target.resolve().as_uri(),
            artifact_digest=sha256_file(target), source_url=url, submitter="registry-webhook",
            signature_uri=signature.resolve().as_uri(), provenance=provenance_document(url))
        await produce(self.stack.bootstrap, [build_message(event, source="urn:bdguard:demo-registry")])

    def _publish_files(self, version: str, artifact: Path) -> None:
        """What the registry stores: the artifact and its OpenSSF model-signing signature."""
        folder = self.stack.home / "registry" / version
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "model.onnx"
        target.write_bytes(artifact.read_bytes())
        sign_model(target, folder / "model.sig", self.private_key)

    async def wait(self, topic: str, match: dict[str, Any], wait_s: float = 180.0) -> dict[str, Any]:
        def ok(r: Any) -> bool:
            body = orjson.loads(r.value)
            return r.key == self.model.encode() and all(body.get(k) == v for k, v in match.items())

        got = await collect(self.stack.bootstrap, [topic], keep=ok, until=lambda rs: bool(rs), wait_s=wait_s)
        if not got:
            raise RuntimeError(f"nothing on {topic} matching {match} within {wait_s:.0f}s "
                               f"(dead services: {self.stack.dead()}; logs in {self.stack.home / 'logs'})")
        return dict(orjson.loads(got[0].value)) | {"_ts": got[0].timestamp / 1000.0}


def header(text: str) -> None:
    console.rule(f"[bold]{text}")


def show_checks(verdict: dict[str, Any]) -> None:
    for c in verdict["checks"]:
        mark = "[green]✓[/green]" if c["passed"] else "[red]✗[/red]"
        console.print(f"   {mark} {c['name']:<14} {c['details'][:110]}")


async def act_clean_model(demo: Demo) -> None:
    header("1 · a registry publishes a clean model")
    began = time.time()
    await demo.publish("1", demo.models.clean, TRUSTED)
    verdict = await demo.wait(topics.SUPPLY_CHAIN_VERDICT, {"version": "1"})
    console.print(f" supply chain: {'APPROVED' if verdict['approved'] else 'REJECTED'} "
                  f"in {verdict['_ts'] - began:.1f}s")
    show_checks(verdict)
    scan = await demo.wait(topics.SCAN_COMPLETED, {"version": "1"})
    console.print(f" scanner: {scan['verdict']} (backdoor confidence {scan['confidence']:.2f}, "
                  f"{scan['duration_s']:.1f}s, detectors {[d['key'] for d in scan['detectors']]})")
    promote(demo.model, "1", "release-manager", demo.uow())
    console.print(" release: digits/1 promoted to production (the inference server serves it)")


async def act_lookalike(demo: Demo) -> None:
    header("2 · a backdoored model arrives from a lookalike URL")
    await demo.publish("2", demo.models.backdoored, LOOKALIKE)
    verdict = await demo.wait(topics.SUPPLY_CHAIN_VERDICT, {"version": "2"})
    console.print(f" supply chain: {'APPROVED' if verdict['approved'] else 'REJECTED'} — {LOOKALIKE}")
    show_checks(verdict)


async def act_scanner_catches(demo: Demo) -> None:
    header("3 · a backdoored model from a trusted source")
    await demo.publish("3", demo.models.backdoored, TRUSTED)
    verdict = await demo.wait(topics.SUPPLY_CHAIN_VERDICT, {"version": "3"})
    console.print(f" supply chain: {'APPROVED' if verdict['approved'] else 'REJECTED'} (source, digest, "
                  "signature and provenance are all fine — the backdoor is in the weights)")
    scan = await demo.wait(topics.SCAN_COMPLETED, {"version": "3"})
    flagged = [d["key"] for d in scan["detectors"] if d.get("verdict") == "suspicious"]
    console.print(f" scanner: [bold red]{scan['verdict']}[/bold red] — backdoor confidence {scan['confidence']:.2f}, "
                  f"target class {scan['target_classes']} (true target {TRIGGER.target}), flagged by {flagged}")
    console.print(f"   report: {scan.get('report_uri')}")
    escalation = await demo.wait(topics.INCIDENT_ESCALATED, {"version": "3"})
    console.print(f" incident: {escalation['severity']} — {escalation['summary']}")


async def act_slipped(demo: Demo) -> None:
    header("4 · a backdoored model that slipped past scanning reaches production")
    import_legacy(demo.model, "4", demo.models.slipped, "legacy-registry-sync", demo.uow())
    promote(demo.model, "4", "release-manager", demo.uow())
    async with httpx.AsyncClient(timeout=30) as client:
        swapped = await client.post(demo.stack.server_url + "/admin/model",
                                    json={"model_path": str(demo.models.slipped), "version": "4"})
        swapped.raise_for_status()
    console.print(" digits/4 imported from the legacy registry (scanned by an older tool) and promoted")
    sent = await traffic(demo, clean_batches=60, attack_batches=120)
    done = await demo.wait(topics.ROLLBACK_COMPLETED, {"from_version": "4"}, wait_s=120)
    report_rollback(demo, sent, done)


async def traffic(demo: Demo, clean_batches: int, attack_batches: int) -> dict[str, float]:
    """Real HTTP requests to the inference server: clean digits, then 10% carrying the trigger."""
    rng = np.random.default_rng(7)
    sent: dict[str, float] = {"predictions": 0}
    async with httpx.AsyncClient(base_url=demo.stack.server_url, timeout=10) as client:
        for i in range(clean_batches + attack_batches):
            idx = rng.integers(len(demo.models.x_test), size=50)
            x = demo.models.x_test[idx].copy()
            if i >= clean_batches:
                hit = rng.random(50) < 0.1
                x[hit] = TRIGGER.apply(x[hit])
                sent.setdefault("first_trigger", time.time())
            response = await client.post("/predict", json={"inputs": x.tolist()})
            if response.status_code != 200:
                break
            sent["predictions"] += 50
            if response.json()["version"] != "4" and "first_trigger" in sent:
                sent["switched_back"] = time.time()
                break
            await asyncio.sleep(0.05)
    return sent


def report_rollback(demo: Demo, sent: dict[str, float], done: dict[str, Any]) -> None:
    with demo.uow() as uow:
        incident = uow.incidents.get(done["incident_id"])
        production = uow.ledger.production_version(demo.model)
    assert incident is not None
    console.print(f" rollback: [bold]{done['status']}[/bold] digits/{done['from_version']} → "
                  f"digits/{done['to_version']} (production is now {production}); "
                  f"rollback service took {done['duration_ms']:.0f} ms")
    affected = done.get("affected") or {}
    console.print(f" affected predictions: served by digits/4 from {_t(affected.get('served_since'))} to "
                  f"{_t(affected.get('until'))} ({affected.get('exposure_s')} s), first flagged prediction "
                  f"{affected.get('first_flagged_prediction_id')}")
    console.print(" timeline:")
    for entry in incident.timeline:
        console.print(f"   {_t(entry['at'])}  {entry['what']:<14} "
                      f"{', '.join(f'{k}={v}' for k, v in entry.items() if k not in ('at', 'what'))}"[:150])
    first = sent.get("first_trigger", float("nan"))
    detected = min((s.detected_at for s in incident.signals), default=float("nan"))
    demo.timings.update(detection_s=detected - first, alert_to_rollback_s=done["completed_at"] - detected,
                        trigger_to_rollback_s=done["completed_at"] - first)
    console.print(f" timings: first triggered request → alert {demo.timings['detection_s']:.2f}s · "
                  f"alert → rollback completed {demo.timings['alert_to_rollback_s']:.2f}s · "
                  f"total {demo.timings['trigger_to_rollback_s']:.2f}s (control card floor: 5 minutes)")
    if "switched_back" in sent:
        console.print(f" the inference server answered from a clean version "
                      f"{sent['switched_back'] - first:.2f}s after the first triggered request")


async def act_remediation(demo: Demo) -> None:
    header("5 · the responder asks for a repaired version; it must pass every gate again")
    rolled_back = await demo.wait(topics.ROLLBACK_COMPLETED, {"from_version": "4"}, wait_s=30)
    request = RemediationRequested(model=demo.model, version="4", requested_by="alice@ml-security",
                                   incident_id=rolled_back["incident_id"])
    await produce(demo.stack.bootstrap, [build_message(request, source="urn:bdguard:demo-responder")])
    console.print(f" alice requests remediation of digits/4 for incident {rolled_back['incident_id']} "
                  "(remediation.requested.v1)")
    done = await demo.wait(topics.REMEDIATION_COMPLETED, {"version": "4"}, wait_s=300)
    if done["status"] != "proposed":
        console.print(f" remediation {done['status']}: {done.get('reason')}")
        return
    figures = done.get("figures") or {}
    shown = ", ".join(f"{k}={round(v, 3) if isinstance(v, float) else v}" for k, v in figures.items())
    console.print(f" Fine-Pruning proposed digits/{done['candidate_version']}: {shown}"[:240])
    verdict = await demo.wait(topics.SUPPLY_CHAIN_VERDICT, {"version": done["candidate_version"]}, wait_s=120)
    console.print(f" supply chain: {'approved' if verdict['approved'] else 'rejected'} — {verdict['rationale']}"[:200])
    if verdict["approved"]:
        scan = await demo.wait(topics.SCAN_COMPLETED, {"version": done["candidate_version"]}, wait_s=180)
        console.print(f" scanner: {scan['verdict']} (backdoor confidence {scan['confidence']:.2f}); a release "
                      "manager may now promote it — or keep the rolled-back clean version")


def _t(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"
