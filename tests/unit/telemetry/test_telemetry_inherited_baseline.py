"""A new model version is judged against its model's latest learnt baseline until it has its own.

Before, each version learnt its baseline from its own first predictions, so a campaign that started with
a (backdoored) release became that version's normal traffic and was never reported.
"""

from __future__ import annotations

import orjson
import pytest

from services.telemetry.bootstrap import InMemoryStore, TelemetryService
from services.telemetry.domain import BACKDOOR_KINDS
from services.telemetry.service_layer.monitor import MonitorState, WindowConfig
from services.telemetry.service_layer.wire import DecodedBatch
from services.telemetry.simulation import Traffic
from shared import topics
from shared.contracts.cloudevents import CloudEventAttributes
from shared.messaging.delivery import Delivery
from shared.messaging.publisher import RecordingPublisher

pytestmark = pytest.mark.unit
T0 = 1_700_000_000.0
CFG = WindowConfig(window_s=10.0, step_s=10.0, lateness_s=0.0, baseline_size=10_000, early_eval_s=0.0)
BATCH = 250  # predictions per message, 0.01 s apart: 2.5 s of event time


class Run:
    def __init__(self, cfg: WindowConfig = CFG) -> None:
        self.states, self.baselines, self.publisher = InMemoryStore(), InMemoryStore(), RecordingPublisher()
        self.service = TelemetryService(cfg, self.states, self.baselines, self.publisher)
        self.offset = 0

    async def send(self, traffic: Traffic, batches: int, **kw: object) -> None:
        for _ in range(batches):
            attrs = CloudEventAttributes.for_topic(topics.PREDICTIONS, source="urn:test", event_id=f"e{self.offset}",
                                                   subject=f"{traffic.model}/{traffic.version}")
            batch = traffic.batch(BATCH, **kw)  # type: ignore[arg-type]
            await self.service.on_batches([Delivery(DecodedBatch(batch), attrs, topics.PREDICTIONS, 0, self.offset)])
            self.offset += 1

    def alerts(self, version: str) -> list[dict[str, object]]:
        found = [orjson.loads(m.value) for m in self.publisher.sent if m.topic == topics.ALERTS]
        return [a for a in found if a["version"] == version]

    def backdoor(self, version: str) -> list[dict[str, object]]:
        return [a for a in self.alerts(version) if a["kind"] in BACKDOOR_KINDS]

    def state(self, version: str) -> MonitorState:
        state = self.states.get(f"m|{version}")
        assert isinstance(state, MonitorState)
        return state


async def _version_one_learnt(run: Run, k: int = 10, seed: int = 5) -> None:
    await run.send(Traffic(k, seed, model="m", version="1", start=T0), 48)  # 12,000 predictions: baseline + windows
    assert run.state("1").baseline is not None and run.backdoor("1") == []


@pytest.mark.parametrize("kind", ["patch", "blend"])
async def test_a_campaign_that_starts_with_a_release_is_caught_against_the_previous_versions_baseline(
        kind: str) -> None:
    run = Run()
    await _version_one_learnt(run)
    release = Traffic(10, 5, model="m", version="2", start=T0 + 200)  # same traffic, version 2 serving it
    await run.send(release, 16, trigger_rate=0.05, target=3, trigger_kind=kind)  # from its first prediction
    found = run.backdoor("2")
    assert found and {a["target_class"] for a in found} == {3}, run.alerts("2")
    assert all(a["evidence"]["baseline_of_version"] == "1" for a in found)
    assert run.state("2").inherited_from == "1"  # the campaign's traffic does not become its own baseline


async def test_without_inheritance_the_same_campaign_is_learnt_as_normal_traffic() -> None:
    run = Run(WindowConfig(**{**CFG.__dict__, "inherit_baseline": False}))
    await _version_one_learnt(run)
    await run.send(Traffic(10, 5, model="m", version="2", start=T0 + 200), 48, trigger_rate=0.05, target=3,
                   trigger_kind="blend")
    assert run.backdoor("2") == [] and run.state("2").inherited_from is None  # the limit this change lifts


async def test_a_benign_release_raises_nothing_and_learns_its_own_baseline() -> None:
    run = Run()
    await _version_one_learnt(run)
    await run.send(Traffic(10, 5, model="m", version="2", start=T0 + 200), 4)
    assert run.state("2").inherited_from == "1" and run.alerts("2") == []
    await run.send(Traffic(10, 6, model="m", version="2", start=T0 + 300), 44)  # 11,000 more predictions
    assert run.state("2").inherited_from is None  # its own baseline, from traffic that raised no backdoor alert
    assert run.backdoor("2") == []


async def test_a_version_with_another_class_count_or_another_model_inherits_nothing() -> None:
    run = Run()
    await _version_one_learnt(run)
    await run.send(Traffic(5, 7, model="m", version="2", start=T0 + 200), 1)
    await run.send(Traffic(10, 5, model="other", version="2", start=T0 + 200), 1)
    assert run.state("2").inherited_from is None and run.state("2").builder is not None
    other = run.states.get("other|2")
    assert isinstance(other, MonitorState) and other.inherited_from is None


async def test_the_inherited_baseline_is_stored_under_the_new_version_and_survives_a_restart() -> None:
    run = Run()
    await _version_one_learnt(run)
    await run.send(Traffic(10, 5, model="m", version="2", start=T0 + 200), 2)
    assert run.baselines.get("m|2") is run.baselines.get("m|1")
    revived = MonitorState.from_dict(orjson.loads(orjson.dumps(run.state("2").to_dict())))
    assert revived.inherited_from == "1"
    restarted = TelemetryService(CFG, run.states, run.baselines, run.publisher)
    run.states.data["m|2"] = revived  # as the state table gives it back after a restart
    run.service = restarted
    await run.send(Traffic(10, 5, model="m", version="2", start=T0 + 210), 16, trigger_rate=0.05, target=3)
    assert {a["target_class"] for a in run.backdoor("2")} == {3}


async def test_a_version_that_raised_a_backdoor_alert_is_no_reference_for_the_next() -> None:
    run = Run()
    await run.send(Traffic(10, 5, model="m", version="4", start=T0), 48)  # version 4 learns its baseline ...
    await run.send(Traffic(10, 5, model="m", version="4", start=T0 + 130), 16, trigger_rate=0.05, target=3)
    assert run.backdoor("4") and run.state("4").raised_backdoor  # ... and its campaign is caught
    await run.send(Traffic(10, 5, model="m", version="1", start=T0 + 200), 2)  # the version rolled back to
    assert run.state("1").inherited_from is None and run.state("1").builder is not None


async def test_a_release_that_shifts_class_shares_for_good_is_reported_then_learnt_not_reported_for_ever() -> None:
    run = Run()
    await _version_one_learnt(run)
    shifted = Traffic(10, 5, model="m", version="2", start=T0 + 200)
    await run.send(shifted, 16, trigger_rate=0.06, target=3, trigger_kind="blend")  # class 3 up, nothing in the inputs
    reported = run.backdoor("2")
    assert reported and all(a["kind"] == "targeted_misclassification" for a in reported)
    assert all(a["evidence"]["corroborated"] is False for a in reported)
    await run.send(shifted, 32, trigger_rate=0.06, target=3, trigger_kind="blend")
    assert run.state("2").inherited_from is None  # its own baseline, with the new shares in it
    before = len(run.backdoor("2"))
    await run.send(shifted, 16, trigger_rate=0.06, target=3, trigger_kind="blend")
    assert len(run.backdoor("2")) == before
