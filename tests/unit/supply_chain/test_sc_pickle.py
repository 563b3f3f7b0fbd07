"""Pickles are built byte by byte and never loaded; every test asserts on what the checks decide."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from services.supply_chain.adapters.filesystem import load_artifact
from services.supply_chain.adapters.pickle_inspector import PickleParseError, scan_pickle
from services.supply_chain.adapters.serialization import inspect_artifact
from services.supply_chain.config import SupplyChainSettings
from services.supply_chain.domain.model import ModelVersionPublished
from services.supply_chain.service_layer.validate import validate_model_version

pytestmark = pytest.mark.unit


def proto0_call(module: str, name: str, argument: str) -> bytes:
    """``module.name(argument)`` as a protocol-0 pickle: GLOBAL, MARK, STRING, TUPLE, REDUCE, STOP."""
    return f"c{module}\n{name}\n(S'{argument}'\ntR.".encode()


def short_str(text: str) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text.encode()


def memoised_stack_global(module: str, name: str) -> bytes:
    """Strings stored in the memo, popped, fetched back with BINGET and fed to STACK_GLOBAL."""
    return (
        b"\x80\x04"
        + short_str(module) + b"\x94" + short_str(name) + b"\x94"
        + b"00"  # POP both: nothing suspicious left on the stack
        + b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
        + short_str("id") + b"\x85R."
    )  # fmt: skip


def scan(data: bytes) -> tuple[str, ...]:
    return scan_pickle(io.BufferedReader(io.BytesIO(data)), 10**9).globals  # type: ignore[arg-type]


def serialization_problems(path: Path, **policy: object) -> list[str]:
    settings = SupplyChainSettings(**policy)  # type: ignore[arg-type]
    artifact = load_artifact(str(path), max_file_bytes=2**30, max_total_bytes=2**31, max_files=100)
    reports, _ = inspect_artifact(artifact, settings.policy())
    return [p for r in reports for p in r.problems]


def test_a_pickle_that_would_run_a_command_is_rejected_and_the_command_never_runs(
    tmp_path: Path, make_event: Callable[..., ModelVersionPublished], settings: SupplyChainSettings
) -> None:
    marker = tmp_path / "pwned"
    model = tmp_path / "model.pkl"
    model.write_bytes(proto0_call("os", "system", f"touch {marker}"))

    verdict = validate_model_version(make_event(model), settings)

    check = next(c for c in verdict.checks if c.name == "serialization")
    assert not verdict.approved
    assert not check.passed and check.severity == "critical"
    assert "os.system" in check.details
    assert not marker.exists()


def test_stack_global_names_fetched_back_from_the_memo_are_resolved() -> None:
    assert scan(memoised_stack_global("builtins", "eval")) == ("builtins.eval",)


def test_a_getattr_chain_exposes_every_global_it_uses() -> None:
    chain = b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'id'\ntR."
    assert set(scan(chain)) == {"builtins.getattr", "builtins.__import__"}


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("runpy", "_run_code"),
        ("subprocess", "Popen"),
        ("ctypes", "CDLL"),
        ("importlib", "import_module"),
        ("builtins", "exec"),
        ("pip._internal", "main"),
        ("torch.serialization", "load"),
    ],
)
def test_globals_outside_the_allowlist_are_rejected_even_when_pickles_are_allowed(
    tmp_path: Path, module: str, name: str
) -> None:
    for i, data in enumerate([proto0_call(module, name, "x"), memoised_stack_global(module, name)]):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(data)
        problems = serialization_problems(path, allow_pickle=True)
        assert any("not on the allowlist" in p and f"{module}.{name}" in p for p in problems), problems


def test_an_allowlisted_pickle_passes_only_when_policy_allows_pickles(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(b"\x80\x02ccollections\nOrderedDict\n)R.")
    assert serialization_problems(path, allow_pickle=True) == []
    assert any("refused by policy" in p for p in serialization_problems(path))


@pytest.mark.parametrize(
    "data",
    [
        proto0_call("os", "system", "id")[:-4],  # truncated mid-stream
        b"\x80\x04\x95\xff\xff\xff\xff",  # FRAME promising bytes that never come
        b"\x80\x04K\x01" + short_str("eval") + b"\x93.",  # STACK_GLOBAL on a non-string
        b"\x80\x04h\x07.",  # BINGET of a memo slot never stored
        b"\x80\x02ccollections\nOrderedDict\n)R.garbage",  # trailing bytes the parser cannot read
    ],
)
def test_a_stream_the_parser_cannot_read_is_a_rejection_never_a_pass(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(PickleParseError):
        scan(data)
    path = tmp_path / "weights.pkl"
    path.write_bytes(data)
    assert serialization_problems(path, allow_pickle=True)


def test_a_pytorch_zip_with_a_malicious_data_pkl_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", proto0_call("os", "system", "id"))
        archive.writestr("archive/data/0", b"\x00" * 64)
        archive.writestr("archive/version", b"3\n")
    problems = serialization_problems(path, allow_pickle=True)
    assert any("archive/data.pkl" in p and "os.system" in p for p in problems), problems


def test_a_pytorch_zip_is_refused_by_default_even_with_harmless_globals(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02ccollections\nOrderedDict\n)R.")
        archive.writestr("archive/data/0", b"\x80\x03" + b"\x00" * 64)  # raw storage bytes
    assert any("refused by policy" in p for p in serialization_problems(path))


def test_a_file_named_onnx_that_is_a_pickle_is_judged_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(memoised_stack_global("os", "system"))
    problems = serialization_problems(path)
    assert any("pickle" in p for p in problems), problems


def test_a_protocol_zero_pickle_named_like_a_text_file_is_still_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "README.txt"
    path.write_bytes(proto0_call("subprocess", "getoutput", "id"))
    assert any("subprocess.getoutput" in p for p in serialization_problems(path))


def test_picklescan_as_a_second_opinion_can_add_a_rejection_but_never_grants_a_pass(tmp_path: Path) -> None:
    pytest.importorskip("picklescan")
    path = tmp_path / "weights.bin"
    path.write_bytes(proto0_call("builtins", "eval", "1"))
    careless = {"allow_pickle": True, "pickle_globals": ["builtins.eval"]}
    assert any("picklescan flags builtins.eval" in p for p in serialization_problems(path, **careless))


@pytest.mark.parametrize(
    "prefix",
    [
        b"I0x10\n0",  # _pickle parses INT with base 0; pickletools.genops raises on it
        b"I01\n0",  # pickle.dumps(True, 0): _pickle reads "01" as True, int("01", 0) raises
        b"I010\n0",  # strtol with base 0 reads a leading zero as octal; int("010", 0) raises
        b"I-07\x00junk\n0",
        b"L0b101L\n0",  # the same for LONG
        b"F1.5\x00junk\n0",  # _pickle hands FLOAT to a C parser: the NUL ends the number
        b"I7\x00junk\n0",
        b"S'\xc3\xa9'\n0",  # a UTF-8 STRING: torch.load's encoding="utf-8" reads it, genops does not
    ],
)
def test_a_pickle_that_only_the_c_unpickler_can_read_is_not_mistaken_for_text(
    tmp_path: Path,
    prefix: bytes,
    make_event: Callable[..., ModelVersionPublished],
    settings: SupplyChainSettings,
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.bin"
    path.write_bytes(prefix + proto0_call("os", "system", f"touch {marker}"))

    verdict = validate_model_version(make_event(path), settings)

    check = next(c for c in verdict.checks if c.name == "serialization")
    assert not check.passed and "os.system" in check.details, check.details
    assert "os.system" in serialization_problems(path, allow_pickle=True)[0]
    assert not marker.exists()
