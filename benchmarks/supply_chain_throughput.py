"""Throughput of the full supply-chain check set on a ~50 MB signed ONNX model.

Usage: ``python benchmarks/supply_chain_throughput.py [--mb 50] [--runs 5] [--external]``.
Prints artifacts/s and MB/s, and the mean seconds each check took.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import signing
from onnx import TensorProto, helper, numpy_helper

from services.supply_chain.config import SupplyChainSettings
from services.supply_chain.domain.digests import manifest_digest
from services.supply_chain.domain.model import ModelVersionPublished
from services.supply_chain.service_layer.validate import validate_model_version


def build_model(directory: Path, megabytes: int, external: bool) -> Path:
    n = megabytes * 2**20 // 4
    weights = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        "bench",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [n])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    target = directory / "model" if external else directory / "model.onnx"
    if external:
        target.mkdir()
        onnx.save(model, target / "model.onnx", save_as_external_data=True, location="weights.bin")
    else:
        onnx.save(model, target)
    return target


def keypair(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / "key.pem", directory / "pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def digest_of(target: Path) -> str:
    if target.is_file():
        return "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest()
    return manifest_digest({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in target.iterdir()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--external", action="store_true", help="ONNX + external data directory")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        target = build_model(directory, options.mb, options.external)
        private, public = keypair(directory)
        signing.Config().use_elliptic_key_signer(private_key=private).sign(target, directory / "model.sig")
        size = sum(p.stat().st_size for p in ([target] if target.is_file() else target.iterdir()))
        event = ModelVersionPublished(
            model="bench", version="1", artifact_uri=str(target), artifact_digest=digest_of(target),
            source_url="https://huggingface.co/models/bench/model", signature_uri=str(directory / "model.sig"),
            provenance={
                "model_provenance": {"origin": "https://huggingface.co/models/bench", "author": "bench"},
                "training_data": {"source": "synthetic", "digest": "sha256:" + "0" * 64},
                "training_procedure": "none", "known_limitations": "benchmark only",
                "security_scan": {"tool": "bdguard", "result": "pass"},
            },
            submitter="bench",
        )  # fmt: skip
        settings = SupplyChainSettings(public_keys=[public])
        per_check: dict[str, list[float]] = defaultdict(list)
        durations = []
        for _ in range(options.runs):
            marks: list[tuple[str, float]] = []

            def mark(name: str, marks: list[tuple[str, float]] = marks) -> None:
                marks.append((name, time.perf_counter()))

            start = time.perf_counter()
            verdict = validate_model_version(event, settings, progress=mark)
            end = time.perf_counter()
            durations.append(end - start)
            for (name, began), (_, ended) in zip(marks, [*marks[1:], ("end", end)], strict=True):
                per_check[name].append(ended - began)
            assert verdict.approved, verdict.rationale
        mean = statistics.mean(durations)
        layout = "ONNX + external data" if options.external else "single ONNX file"
        print(f"{layout}, {size / 2**20:.1f} MiB, {options.runs} runs, mean {mean:.2f} s per artifact")
        print(f"throughput: {1 / mean:.2f} artifacts/s, {size / 2**20 / mean:.1f} MiB/s")
        for name, values in per_check.items():
            print(f"  {name:<14} {statistics.mean(values):.3f} s")


if __name__ == "__main__":
    main()
