"""``verify`` with awkward inputs: exit 1 (rejected) or 2 (usage), one line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from .conftest import TRUSTED_URL, onnx_model

pytestmark = pytest.mark.unit


def test_an_artifact_with_a_non_utf8_name_gets_its_report_written(app: typer.Typer, tmp_path: Path) -> None:
    odd = tmp_path / b"m\xff.onnx".decode("utf-8", "surrogateescape")
    onnx.save(onnx_model(), odd)
    report = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["verify", str(odd), "--source-url", TRUSTED_URL, "--report", str(report)])
    assert res.exit_code == 1, res.output  # unsigned, no provenance: rejected, and the report says why
    assert json.loads(report.read_text())["artifact_uri"].endswith("m\\xff.onnx")


def test_a_report_into_a_missing_folder_is_refused_before_the_checks(app: typer.Typer, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(onnx_model(), model)
    res = CliRunner().invoke(app, ["verify", str(model), "--source-url", TRUSTED_URL,
                                   "--report", str(tmp_path / "missing" / "r.json")])
    assert res.exit_code == 2 and "does not exist" in res.output and "REJECTED" not in res.output


@pytest.mark.parametrize("with_signature", [False, True])
@pytest.mark.parametrize("key", ["junk", "private", "rsa", "secp256k1"])
def test_a_public_key_that_is_not_an_ec_public_key_pem_is_refused_before_the_checks(
        app: typer.Typer, tmp_path: Path, keys: dict[str, tuple[Path, Path]], key: str, with_signature: bool) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(onnx_model(), model)
    bad = tmp_path / f"{key}.pem"
    if key == "junk":
        bad.write_text("not a key\n")
    elif key == "private":
        bad.write_bytes(keys["good"][0].read_bytes())  # the signing half, given by mistake
    else:  # a public key that model-signing cannot verify with: RSA, or EC on a curve it does not take
        other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if key == "rsa"
                 else ec.generate_private_key(ec.SECP256K1())).public_key()
        bad.write_bytes(other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    signature = tmp_path / "m.sig"
    signature.write_text("{}")
    argv = ["verify", str(model), "--source-url", TRUSTED_URL, "--public-key", str(bad)]
    res = CliRunner().invoke(app, argv + (["--signature", str(signature)] if with_signature else []))
    assert res.exit_code == 2, res.output
    [error] = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert f"{key}.pem" in error and "--public-key" in error and "REJECTED" not in res.output, res.output


def test_a_valid_public_key_passes_the_up_front_check(app: typer.Typer, tmp_path: Path,
                                                      keys: dict[str, tuple[Path, Path]]) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(onnx_model(), model)
    res = CliRunner().invoke(app, ["verify", str(model), "--source-url", TRUSTED_URL,
                                   "--public-key", str(keys["good"][1])])
    assert res.exit_code == 1 and "error:" not in res.output, res.output  # unsigned: rejected, not a usage error
