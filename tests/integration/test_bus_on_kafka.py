"""The shared message path on a real Kafka broker: a faust agent, the dead-letter topic, the outbox."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import orjson

from shared import topics
from shared.contracts.cloudevents import CloudEventAttributes
from shared.contracts.records import Alert
from shared.db.unit_of_work import SqlUnitOfWork
from shared.messaging.admin import catalogue_partitions, ensure_topics
from shared.messaging.delivery import Delivery, deliver
from shared.messaging.envelope import OutgoingMessage, build_message
from shared.messaging.faust_app import FaustPublisher, create_faust_app, raw_topic
from shared.messaging.outbox import OutboxRelay, audit
from shared.messaging.publisher import KafkaPublisher
from shared.settings import ServiceSettings
from shared.testing.kafka import collect, produce, running


def _alert(model: str, alert_id: str) -> Alert:
    return Alert(alert_id=alert_id, model=model, version="1", kind="targeted_misclassification",
                 severity_hint="high", source="telemetry", detected_at=time.time(), evidence={"share": 0.4})


def _headers(record: object) -> dict[str, bytes]:
    return dict(record.headers)  # type: ignore[attr-defined]


async def test_an_agent_consumes_and_produces_and_dead_letters_bad_input_without_stopping(
        kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, catalogue_partitions())
    model = f"m-{uuid.uuid4().hex[:8]}"
    app = create_faust_app(f"test-echo-{model}", ServiceSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap))
    publisher = FaustPublisher(app)

    async def handle(delivery: Delivery) -> None:
        alert = delivery.record
        assert isinstance(alert, Alert)
        if alert.source == "responder":  # our own output comes back round on the same topic
            return
        escalated = Alert(**{**alert.asdict(), "alert_id": alert.alert_id + "-seen", "source": "responder"})
        await publisher.publish(build_message(escalated, source="urn:test", correlation_id=delivery.attrs.id))

    @app.agent(raw_topic(app, topics.ALERTS))
    async def echo_alert(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            await deliver(topic=topics.ALERTS, consumer="echo", value=event.value, key=event.key,
                          headers=event.headers, partition=event.message.partition, offset=event.message.offset,
                          handle=handle, publisher=publisher)

    good = build_message(_alert(model, "a-1"), source="urn:test")
    wrong_shape = orjson.dumps({**_alert(model, "a-2").asdict(), "severity_hint": "apocalyptic"})
    async with running(app):
        await produce(kafka_bootstrap, [(topics.ALERTS, b"\x80\x04not-json", model),
                                        (topics.ALERTS, wrong_shape, model), good])
        out = await collect(kafka_bootstrap, [topics.ALERTS, topics.dead_letter_topic(topics.ALERTS)],
                            keep=lambda r: r.key == model.encode(),
                            until=lambda got: len([r for r in got if r.topic.endswith(".dlq")]) >= 2
                            and any(b"a-1-seen" in r.value for r in got))

    dead = [r for r in out if r.topic.endswith(".dlq")]
    assert [r.value for r in dead] == [b"\x80\x04not-json", wrong_shape]
    reasons = [_headers(r)["dlq_reason"].decode() for r in dead]
    assert "not JSON" in reasons[0] and "severity_hint" in reasons[1]
    assert {_headers(r)["dlq_source_topic"] for r in dead} == {topics.ALERTS.encode()}
    echoed = [r for r in out if b"a-1-seen" in r.value]
    assert len(echoed) == 1
    assert orjson.loads(echoed[0].value)["alert_id"] == "a-1-seen"  # plain JSON for plain consumers
    attrs = CloudEventAttributes.from_headers(echoed[0].headers)
    assert attrs.correlationid == CloudEventAttributes.from_headers(good.headers).id


async def test_the_outbox_relay_publishes_audit_records_once(kafka_bootstrap: str,
                                                            uow_factory: Callable[[], SqlUnitOfWork]) -> None:
    subject = f"m-{uuid.uuid4().hex[:8]}/1"
    with uow_factory() as uow:
        audit(uow, actor="rollback", action="alias.moved", subject=subject, details={"to": "0"})
        uow.commit()
    publisher = KafkaPublisher(kafka_bootstrap)
    await publisher.start()
    try:
        relay = OutboxRelay(uow_factory, publisher)
        assert await relay.flush() == 1
        assert await relay.flush() == 0
    finally:
        await publisher.stop()
    out = await collect(kafka_bootstrap, [topics.AUDIT], keep=lambda r: r.key == subject.encode(),
                        until=lambda got: len(got) >= 1, wait_s=15)
    assert len(out) == 1
    body = orjson.loads(out[0].value)
    assert (body["seq"], body["action"], body["subject"]) == (1, "alias.moved", subject)
    assert CloudEventAttributes.from_headers(out[0].headers).type == topics.cloudevent_type(topics.AUDIT)


def test_outgoing_messages_are_keyed_by_model_for_per_model_ordering() -> None:
    msg: OutgoingMessage = build_message(_alert("digits", "x"), source="urn:test")
    assert msg.key == "digits" and msg.topic == topics.ALERTS
