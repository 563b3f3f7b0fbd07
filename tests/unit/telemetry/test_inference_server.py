"""Reference inference server: predicts with onnxruntime, reports to telemetry, swaps versions live."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from services.inference_server import create_app
from services.telemetry.client import TelemetryClient, TelemetrySettings

pytestmark = pytest.mark.unit


def _model(path: Path, weights: np.ndarray) -> Path:
    """Gemm + Softmax classifier, inputs [N, 4] -> probabilities [N, 3]."""
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "W"),
                     numpy_helper.from_array(np.zeros(3, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


class RecordingSender:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def start(self) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.values.append(value)

    async def stop(self) -> None:
        return None


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path]:
    eye = np.zeros((4, 3))
    eye[[0, 1, 2], [0, 1, 2]] = 5.0
    return _model(tmp_path / "v1.onnx", eye), _model(tmp_path / "v2.onnx", eye[:, ::-1].copy())


def _client() -> tuple[TelemetryClient, RecordingSender]:
    sender = RecordingSender()
    settings = TelemetrySettings(bootstrap_servers="127.0.0.1:1", linger_ms=10, server_id="srv")
    return TelemetryClient(settings, sender_factory=lambda s: sender), sender


def test_predict_returns_classes_and_probabilities_and_records_telemetry(models: tuple[Path, Path]) -> None:
    telemetry, sender = _client()
    with TestClient(create_app(models[0], "tiny", "1", telemetry)) as http:
        r = http.post("/predict", json={"inputs": [[1, 0, 0, 0], [0, 0, 1, 0]], "ids": ["a", "b"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["predictions"] == [0, 2] and (body["model"], body["version"]) == ("tiny", "1")
        assert np.allclose(np.sum(body["probabilities"], axis=1), 1.0)
        assert body["ids"] == ["a", "b"] and telemetry.metrics.buffered + telemetry.metrics.sent == 2
    assert telemetry.metrics.sent == 2  # stop() flushed on shutdown
    assert b'"ids":["a","b"]' in sender.values[0]


def test_healthz_reports_the_served_version_and_telemetry_metrics(models: tuple[Path, Path]) -> None:
    telemetry, _ = _client()
    with TestClient(create_app(models[0], "tiny", "1", telemetry)) as http:
        body = http.get("/healthz").json()
    assert body["status"] == "ok" and body["version"] == "1" and "dropped" in body["telemetry"]


def test_the_served_version_can_be_swapped_at_runtime(models: tuple[Path, Path]) -> None:
    telemetry, _ = _client()
    with TestClient(create_app(models[0], "tiny", "1", telemetry, admin_token="s3cret")) as http:
        denied = http.post("/admin/model", json={"model_path": str(models[1]), "version": "2"})
        assert denied.status_code == 403
        r = http.post("/admin/model", json={"model_path": str(models[1]), "version": "2"},
                      headers={"X-Admin-Token": "s3cret"})
        assert r.json() == {"model": "tiny", "version": "2", "previous_version": "1"}
        body = http.post("/predict", json={"inputs": [[1, 0, 0, 0]]}).json()
        assert body["version"] == "2" and body["predictions"] == [2]
        bad = http.post("/admin/model", json={"model_path": "/nonexistent.onnx", "version": "3"},
                        headers={"X-Admin-Token": "s3cret"})
        assert bad.status_code == 400 and http.get("/healthz").json()["version"] == "2"


def test_predict_rejects_mismatched_ids_and_wrong_input_width(models: tuple[Path, Path]) -> None:
    telemetry, _ = _client()
    with TestClient(create_app(models[0], "tiny", "1", telemetry)) as http:
        assert http.post("/predict", json={"inputs": [[1, 0, 0, 0]], "ids": ["a", "b"]}).status_code == 422
        assert http.post("/predict", json={"inputs": [[1, 0, 0]]}).status_code == 422


def test_predictions_are_served_while_kafka_is_unreachable(models: tuple[Path, Path]) -> None:
    telemetry = TelemetryClient(TelemetrySettings(bootstrap_servers="127.0.0.1:1", stop_timeout_s=0.5,
                                                  send_timeout_s=0.5))
    with TestClient(create_app(models[0], "tiny", "1", telemetry)) as http:
        for _ in range(20):
            assert http.post("/predict", json={"inputs": [[0, 1, 0, 0]]}).status_code == 200
    assert telemetry.metrics.sent == 0 and telemetry.metrics.buffered + telemetry.metrics.dropped == 20


def test_server_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.inference_server.config import InferenceServerSettings
    monkeypatch.setenv("BDGUARD_INFERENCE_MODEL_PATH", "/m.onnx")
    monkeypatch.setenv("BDGUARD_INFERENCE_MODEL_NAME", "tiny")
    monkeypatch.setenv("BDGUARD_INFERENCE_MODEL_VERSION", "3")
    s = InferenceServerSettings()  # type: ignore[call-arg]
    assert (s.model_path, s.model_name, s.model_version, s.port) == ("/m.onnx", "tiny", "3", 8080)


def test_diverted_traffic_is_refused_until_a_safe_version_is_loaded(models: tuple[Path, Path]) -> None:
    telemetry, _ = _client()
    with TestClient(create_app(models[0], "tiny", "1", telemetry, admin_token="s3cret")) as http:
        token = {"X-Admin-Token": "s3cret"}
        assert http.post("/admin/divert", json={"reason": "no safe version"}).status_code == 403
        assert http.post("/admin/divert", json={"reason": "no safe version"}, headers=token).status_code == 200
        refused = http.post("/predict", json={"inputs": [[0.0] * 4]})
        assert refused.status_code == 503 and "no safe version" in refused.json()["detail"]
        http.post("/admin/model", json={"model_path": str(models[1]), "version": "2"}, headers=token)
        assert http.post("/predict", json={"inputs": [[0.0] * 4]}).status_code == 200


def test_with_clean_data_the_server_sends_strip_entropies_of_the_served_model(models: tuple[Path, Path]) -> None:
    import orjson

    telemetry, sender = _client()
    clean = np.random.default_rng(0).uniform(0.0, 1.0, size=(64, 4)).astype(np.float32)
    with TestClient(create_app(models[0], "tiny", "1", telemetry, strip_clean=clean)) as http:
        # an input that dominates any blend (as a trigger does) and one that does not
        r = http.post("/predict", json={"inputs": [[12, 0, 0, 0], [0.4, 0.5, 0.45, 0]], "ids": ["t", "c"]})
        assert r.status_code == 200, r.text
    strip = orjson.loads(sender.values[0])["strip"]
    assert len(strip) == 2 and all(v is not None and v >= 0 for v in strip)
    assert strip[0] < 0.05 < strip[1]
