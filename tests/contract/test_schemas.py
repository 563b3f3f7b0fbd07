"""Every topic has a schema; every wire record round-trips against it; plain JSON on the wire."""

from __future__ import annotations

import json

import orjson
import pytest

from shared import topics
from shared.contracts.cloudevents import CloudEventAttributes
from shared.contracts.records import RECORD_BY_TOPIC
from shared.contracts.validation import (
    SCHEMAS_DIR,
    ContractViolation,
    decode_record,
    schema_path,
    validator_for,
)
from shared.messaging.envelope import build_message

CATALOGUE = json.loads((SCHEMAS_DIR / "topics.json").read_text())
TOPICS = [t["name"] for t in CATALOGUE["topics"]]


def _example(topic: str) -> dict:
    return json.loads(schema_path(topic).read_text())["examples"][0]


def test_the_catalogue_and_the_topics_module_name_the_same_topics() -> None:
    assert sorted(TOPICS) == sorted(topics.ALL_TOPICS) == sorted(RECORD_BY_TOPIC)


@pytest.mark.parametrize("entry", CATALOGUE["topics"], ids=lambda t: t["name"])
def test_each_catalogue_entry_names_key_partitions_producer_consumers_and_dlq(entry: dict) -> None:
    assert set(entry) >= {"name", "key", "partitions", "producer", "consumers", "schema", "dlq"}
    assert entry["dlq"] == topics.dead_letter_topic(entry["name"])
    assert (SCHEMAS_DIR / entry["schema"]).is_file()
    name, _, version = entry["name"].rpartition(".")
    assert version.startswith("v") and "." in name


@pytest.mark.parametrize("topic", TOPICS)
def test_the_schema_example_round_trips_through_the_wire_record(topic: str) -> None:
    example = _example(topic)
    record = decode_record(topic, orjson.dumps(example))
    assert record.to_representation() == example
    validator_for(topic).validate(record.to_representation())


@pytest.mark.parametrize("topic", TOPICS)
def test_record_fields_and_schema_properties_agree(topic: str) -> None:
    schema = json.loads(schema_path(topic).read_text())
    assert set(RECORD_BY_TOPIC[topic]._options.fields) == set(schema["properties"])


@pytest.mark.parametrize("topic", TOPICS)
def test_a_payload_missing_a_required_field_is_rejected_with_the_field_named(topic: str) -> None:
    schema = json.loads(schema_path(topic).read_text())
    missing = schema["required"][0]
    payload = {k: v for k, v in _example(topic).items() if k != missing}
    with pytest.raises(ContractViolation, match=missing):
        decode_record(topic, orjson.dumps(payload))


@pytest.mark.parametrize("topic", TOPICS)
def test_unknown_fields_are_rejected_rather_than_silently_dropped(topic: str) -> None:
    with pytest.raises(ContractViolation, match="surprise"):
        decode_record(topic, orjson.dumps({**_example(topic), "surprise": 1}))


def test_garbage_bytes_are_a_contract_violation_not_a_crash() -> None:
    with pytest.raises(ContractViolation, match="not JSON"):
        decode_record(topics.ALERTS, b"\x80\x04\x95 pickle?")


@pytest.mark.parametrize("topic", TOPICS)
def test_messages_carry_cloudevents_headers_and_a_plain_json_value(topic: str) -> None:
    record = decode_record(topic, orjson.dumps(_example(topic)))
    message = build_message(record, source="urn:bdguard:test", correlation_id="corr-1")
    attrs = CloudEventAttributes.from_headers(message.headers)
    assert attrs.type == topics.cloudevent_type(topic)
    assert attrs.correlationid == "corr-1" and attrs.specversion == "1.0"
    assert attrs.subject == record.ce_subject()
    assert orjson.loads(message.value) == _example(topic)
