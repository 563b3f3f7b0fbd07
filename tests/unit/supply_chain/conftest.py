"""Real files for the supply-chain tests: EC keys, ONNX models, signatures, provenance."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from onnx import TensorProto, helper, numpy_helper

from services.supply_chain.config import SupplyChainSettings
from services.supply_chain.domain.model import ModelVersionPublished
from services.supply_chain.entrypoints.cli import register

TRUSTED_URL = "https://huggingface.co/models/acme/resnet"


def write_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / f"{name}.key.pem", directory / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("keys")
    return {"good": write_keypair(directory, "good"), "other": write_keypair(directory, "other")}


def onnx_model(weights: np.ndarray | None = None, domain: str = "", op_type: str = "Add") -> onnx.ModelProto:
    """Y = X + W (or a custom op) with a float32 weight initializer."""
    w = np.arange(16, dtype=np.float32) if weights is None else weights
    node = helper.make_node(op_type, ["X", "W"], ["Y"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [w.size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [w.size])],
        [numpy_helper.from_array(w, "W")],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def with_external(model: onnx.ModelProto, location: str, offset: int = 0, length: int | None = None) -> None:
    """Point the weight at external data without writing it (the test lays out the files)."""
    tensor = model.graph.initializer[0]
    size = len(tensor.raw_data) or tensor.float_data.__len__() * 4
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset), "length": str(size if length is None else length)}
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def sign(model_path: Path, signature: Path, private_key: Path) -> Path:
    from model_signing import signing

    signing.Config().use_elliptic_key_signer(private_key=private_key).sign(model_path, signature)
    return signature


@pytest.fixture
def provenance() -> dict[str, Any]:
    return {
        "model_provenance": {"origin": TRUSTED_URL, "author": "Acme ML team"},
        "training_data": {"source": "s3://acme/imagenet-subset", "digest": "sha256:" + "ab" * 32},
        "training_procedure": "SGD, 90 epochs, standard augmentation",
        "known_limitations": ["not evaluated on medical images"],
        "security_scan": {"tool": "bdguard scan-model", "result": "pass", "date": "2026-11-01"},
    }


@pytest.fixture
def settings(keys: dict[str, tuple[Path, Path]]) -> SupplyChainSettings:
    return SupplyChainSettings(public_keys=[keys["good"][1]], ort_load_enabled=False)


@pytest.fixture
def make_event(provenance: dict[str, Any]) -> Callable[..., ModelVersionPublished]:
    def build(artifact: Path, **overrides: Any) -> ModelVersionPublished:
        fields: dict[str, Any] = {
            "model": "resnet",
            "version": "1",
            "artifact_uri": str(artifact),
            "artifact_digest": sha256(artifact) if artifact.is_file() else "",
            "source_url": TRUSTED_URL,
            "signature_uri": None,
            "provenance": provenance,
            "submitter": "alice",
        }
        fields.update(overrides)
        return ModelVersionPublished(**fields)

    return build


@pytest.fixture
def app() -> typer.Typer:
    """The supply-chain commands under a root app, as ``bdguard`` has one."""
    root = typer.Typer()

    @root.callback()
    def main() -> None:
        """Root app, as the lead's ``bdguard`` has one."""

    register(root)
    return root
