"""Decode raw Kafka values into wire records, validating against the topic's JSON Schema."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from shared.contracts.records import RECORD_BY_TOPIC, WireRecord

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


class ContractViolation(ValueError):
    """The bytes are not a valid event for the topic; the message says why (goes to the DLQ)."""


def schema_path(topic: str) -> Path:
    return SCHEMAS_DIR / f"{topic}.schema.json"


@cache
def validator_for(topic: str) -> Draft202012Validator:
    schema = json.loads(schema_path(topic).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_payload(topic: str, payload: Any) -> None:
    errors = sorted(validator_for(topic).iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise ContractViolation(f"schema {topic}: {where}: {first.message}"[:500])


def parse_json(raw: bytes | None) -> Any:
    if raw is None:
        raise ContractViolation("empty message value (tombstone)")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractViolation(f"value is not JSON: {exc}") from exc


def decode_record(topic: str, raw: bytes | None) -> WireRecord:
    """Parse, validate against the schema, and build the topic's record."""
    payload = parse_json(raw)
    validate_payload(topic, payload)
    return RECORD_BY_TOPIC[topic].from_data(payload)


def encode_record(record: WireRecord) -> bytes:
    return orjson.dumps(record.to_representation())
