"""One prediction per message (a plain client without the bdguard library) is accepted and merged."""

from __future__ import annotations

import math

import orjson
import pytest

from services.telemetry.service_layer.monitor import MonitorState, WindowConfig, ingest_many
from services.telemetry.service_layer.wire import decode_batch
from services.telemetry.simulation import Traffic
from shared import topics
from shared.contracts.validation import ContractViolation

BASE = {"model": "digits", "version": "3", "prediction_id": "req-17", "ts": 1763900000.5}


def _decode(value: dict) -> object:  # type: ignore[type-arg]
    return decode_batch(topics.PREDICTIONS, orjson.dumps(value)).batch


def test_a_prediction_with_probabilities_becomes_a_one_row_batch() -> None:
    batch = _decode({**BASE, "probabilities": [0.1, 0.7, 0.2], "sig": "abcd", "strip_entropy": 0.4})
    assert (batch.model, batch.version, batch.ids, batch.n_classes) == ("digits", "3", ["req-17"], 3)  # type: ignore[attr-defined]
    assert batch.pred.tolist() == [1] and batch.conf.tolist() == [0.7] and batch.sig == ["abcd"]  # type: ignore[attr-defined]
    expected = -(0.1 * math.log(0.1) + 0.7 * math.log(0.7) + 0.2 * math.log(0.2))
    assert batch.entropy[0] == pytest.approx(expected) and batch.strip.tolist() == [0.4]  # type: ignore[attr-defined]


def test_a_top1_prediction_gets_an_entropy_estimate_from_its_confidence() -> None:
    sure = _decode({**BASE, "predicted_class": 4, "confidence": 1.0, "n_classes": 10})
    unsure = _decode({**BASE, "predicted_class": 4, "confidence": 0.1, "n_classes": 10})
    assert sure.pred.tolist() == [4] and sure.entropy[0] == pytest.approx(0.0, abs=1e-9)  # type: ignore[attr-defined]
    assert unsure.entropy[0] == pytest.approx(math.log(10))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("change", "named"), [
    ({"ts": None}, "ts"), ({"probabilities": [0.5, 1.5]}, "probabilities"), ({"probabilities": "x"}, "probabilities"),
    ({"predicted_class": 10, "confidence": 0.9, "n_classes": 10}, "predicted_class"),
    ({"predicted_class": 1, "n_classes": 10}, "confidence"), ({"surprise": 1}, "surprise"),
    ({"ts": "soon"}, "ts"), ({"ts": True}, "ts"), ({"probabilities": [0.5, 0.5], "sig": 7}, "sig"),
])
def test_a_bad_single_prediction_is_a_contract_violation_naming_the_field(change: dict, named: str) -> None:  # type: ignore[type-arg]
    value = {**BASE, **change}
    if value.get("ts") is None:
        del value["ts"]
    with pytest.raises(ContractViolation, match=named):
        decode_batch(topics.PREDICTIONS, orjson.dumps(value))


def test_single_predictions_merged_per_group_count_like_batches() -> None:
    traffic = Traffic(10, seed=5, model="digits", version="3")
    cfg = WindowConfig(window_s=10.0, step_s=10.0, lateness_s=0.0, baseline_size=1_000, early_eval_s=0.0)
    state, closed, offset = MonitorState("digits", "3"), [], 0
    for _ in range(6):
        big = traffic.batch(500)
        items = []
        for i in range(len(big)):
            offset += 1
            single = {"model": "digits", "version": "3", "prediction_id": big.ids[i], "ts": float(big.ts[i]),
                      "predicted_class": int(big.pred[i]), "confidence": float(big.conf[i]), "n_classes": 10,
                      "entropy": float(big.entropy[i]), "sig": big.sig[i]}
            items.append((_decode(single), 0, offset))
        closed += ingest_many(state, items, now=0.0, cfg=cfg).closed  # type: ignore[arg-type]
    assert [w.stats.count for w in closed] == [1000] * len(closed) and len(closed) >= 1
    assert state.baseline is not None
