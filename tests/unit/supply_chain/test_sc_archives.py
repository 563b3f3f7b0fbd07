from __future__ import annotations

import io
import json
import lzma
import pickletools
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from services.supply_chain.adapters.filesystem import load_artifact
from services.supply_chain.adapters.safetensors_inspector import inspect_safetensors
from services.supply_chain.adapters.serialization import inspect_artifact
from services.supply_chain.domain.policy import ArchiveLimits, SupplyChainPolicy

pytestmark = pytest.mark.unit


def problems(path: Path, policy: SupplyChainPolicy | None = None) -> list[str]:
    artifact = load_artifact(str(path), max_file_bytes=2**30, max_total_bytes=2**31, max_files=100)
    reports, _ = inspect_artifact(artifact, policy or SupplyChainPolicy())
    return [p for r in reports for p in r.problems]


def test_a_zip_bomb_is_rejected_from_its_directory_without_inflating_it(tmp_path: Path) -> None:
    path = tmp_path / "weights.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", b"\x00" * (20 * 2**20))
    assert any("bomb" in p for p in problems(path))


@pytest.mark.parametrize("name", ["../../etc/cron.d/x", "/etc/passwd", "a/../../b", "C:/Windows/x", "a\\..\\b"])
def test_zip_members_that_could_escape_the_extraction_directory_are_rejected(tmp_path: Path, name: str) -> None:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, b"data")
    assert problems(path)


def test_a_zip_member_that_is_a_symlink_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    info = zipfile.ZipInfo("weights.bin")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(info, "/etc/shadow")
    assert any("symbolic link" in p for p in problems(path))


def test_a_zip_nested_inside_a_zip_is_rejected(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("x", b"x")
    path = tmp_path / "outer.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("inner.bin", inner.getvalue())
    assert any("nested zip" in p for p in problems(path))


def test_a_tar_with_traversal_and_a_symlink_is_rejected_without_extracting(tmp_path: Path) -> None:
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        data = tarfile.TarInfo("../../evil.sh")
        data.size = 4
        archive.addfile(data, io.BytesIO(b"boom"))
        link = tarfile.TarInfo("weights.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    found = problems(path)
    assert any("traversal" in p for p in found) and any("link" in p for p in found), found
    assert not (tmp_path.parent / "evil.sh").exists()


def test_a_file_that_is_both_a_pickle_and_a_zip_is_rejected_as_a_polyglot(tmp_path: Path) -> None:
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, "w") as archive:
        archive.writestr("x", b"x")
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x02ccollections\nOrderedDict\n)R." + archive_bytes.getvalue())
    assert any("polyglot" in p or "pickle" in p for p in problems(path))


def write_safetensors(path: Path, header: dict[str, object], data: bytes, length: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def test_a_well_formed_safetensors_file_passes(tmp_path: Path) -> None:
    data = np.ones(4, dtype=np.float32).tobytes()
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "__metadata__": {"a": "b"}}
    assert problems(write_safetensors(tmp_path / "m.safetensors", header, data)) == []


def test_a_safetensors_header_longer_than_the_file_is_rejected(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.bin", {"w": {}}, b"", length=10**6)
    assert any("header length" in p or "cannot be inspected" in p for p in problems(path))


def test_safetensors_offsets_that_overlap_or_leave_gaps_are_rejected(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    path = write_safetensors(tmp_path / "m.safetensors", header, b"\x00" * 12)
    assert any("gap or overlap" in p for p in inspect_safetensors(path, 100_000_000))


def test_a_safetensors_header_with_duplicate_tensor_names_is_rejected(tmp_path: Path) -> None:
    # json keeps the last entry and other parsers the first: the two readers would see different tensors
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    raw = f'{{"w": {entry}, "w": {entry.replace("F32", "I32")}}}'.encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00" * 4)
    assert any("twice" in p for p in inspect_safetensors(path, 100_000_000))


def test_safetensors_shapes_and_offsets_must_be_integers_not_booleans(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [True], "data_offsets": [False, 4]}}
    path = write_safetensors(tmp_path / "m.safetensors", header, b"\x00" * 4)
    assert inspect_safetensors(path, 100_000_000)


def test_a_safetensors_header_over_the_cap_is_rejected(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    path = write_safetensors(tmp_path / "m.safetensors", header, b"\x00" * 4)
    assert "exceeds" in inspect_safetensors(path, 8)[0]


def test_unknown_binary_content_is_rejected_unless_policy_allows_it(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * 4)
    assert any("cannot be inspected" in p for p in problems(path))
    assert problems(path, SupplyChainPolicy(allow_unknown_formats=True)) == []


def test_binary_content_larger_than_the_sniffing_window_is_not_taken_for_text(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x01\xff" * 40_000)  # 80 kB, invalid UTF-8 from byte 1, no magic, no pickle
    assert any("'unknown' cannot be inspected" in p for p in problems(path))


def test_utf8_text_cut_mid_character_by_the_sniffing_window_is_still_text(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("a" + "é" * 40_000, encoding="utf-8")  # the 64 KiB window ends inside a character
    assert problems(path) == []


def safetensors_pickle_polyglot(payload: bytes) -> bytes:
    """A valid safetensors file that ``pickle.load`` also runs from byte 0.

    The header length's bytes are BINBYTES (``B`` + a 4-byte length) swallowing the start of the JSON
    header; a JSON string closing on a line of its own is then a protocol-0 STRING, ``}}`` two empty
    dicts, and ``payload`` (the one U8 tensor) the code.
    """
    skip = 160  # BINBYTES length: it ends right before the STRING opcode inside the JSON header
    length = ord("B") + 256 * skip
    prefix = b'{"w":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]},"__metadata__":{"p":"' % (
        len(payload),
        len(payload),
    )
    prefix += b"a" * (skip - 3 - len(prefix))
    opening, closing = b'S","q":"', b'"\n}}'
    header = prefix + opening + b"b" * (length - len(prefix) - len(opening) - len(closing)) + closing
    return struct.pack("<Q", length) + header + payload


def test_a_safetensors_file_that_is_also_a_pickle_is_rejected_as_a_polyglot(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    data = safetensors_pickle_polyglot(b"0cos\nsystem\n(S'id'\ntR.")
    path.write_bytes(data)
    assert json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])  # a real safetensors header...
    assert "os system" in [arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"]  # ...and pickle
    assert any("polyglot(safetensors+pickle)" in p for p in problems(path))


def test_a_tar_whose_first_member_name_is_a_pickle_is_rejected_as_a_polyglot(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        member = tarfile.TarInfo("cos\nsystem\n(S'id'\ntR.")  # pickle.load runs the header's name field
        member.size = 3
        archive.addfile(member, io.BytesIO(b"\x00\x01\x02"))
    assert any("polyglot(tar+pickle)" in p for p in problems(path))


def test_a_polyglot_inside_an_archive_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.safetensors", safetensors_pickle_polyglot(b"0cos\nsystem\n(S'id'\ntR."))
    assert any("model.safetensors" in p and "polyglot(safetensors+pickle)" in p for p in problems(path))


def test_safetensors_headers_of_every_length_residue_are_not_taken_for_pickles(tmp_path: Path) -> None:
    data = bytes(range(1, 256)).replace(b"\x80", b"\n") * 4  # newlines give GLOBAL lines to end on
    for pad in range(256):
        tensor = {"dtype": "U8", "shape": [len(data)], "data_offsets": [0, len(data)]}
        header = {"w": tensor, "__metadata__": {"p": "c" * pad}}
        path = write_safetensors(tmp_path / f"{pad}.safetensors", header, data)
        # every low byte of the header length, 0x80 (pickle's PROTO opcode) included, is a clean file
        assert problems(path) == [], (pad, problems(path))


@pytest.mark.parametrize("inner_format", ["zip", "tar.gz"])
def test_an_archive_nested_within_the_allowed_depth_is_inspected_not_waved_through(
    tmp_path: Path, inner_format: str
) -> None:
    evil = b"cos\nsystem\n(S'id'\ntR."
    inner = io.BytesIO()
    if inner_format == "zip":
        with zipfile.ZipFile(inner, "w") as archive:
            archive.writestr("archive/data.pkl", evil)
    else:
        with tarfile.open(fileobj=inner, mode="w:gz") as archive:
            member = tarfile.TarInfo("archive/data.pkl")
            member.size = len(evil)
            archive.addfile(member, io.BytesIO(evil))
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("inner.pt", inner.getvalue())
    policy = SupplyChainPolicy(allow_pickle=True, archive=ArchiveLimits(max_nesting=1))
    found = problems(path, policy)
    assert any("inner.pt/archive/data.pkl" in p and "os.system" in p for p in found), found
    assert any("nested" in p for p in problems(path, SupplyChainPolicy(allow_pickle=True)))


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA, 99])
def test_a_zip_member_that_cannot_be_decompressed_is_a_clear_rejection_not_a_crash(tmp_path: Path, method: int) -> None:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w", compression=method if method != 99 else zipfile.ZIP_STORED) as archive:
        archive.writestr("weights.bin", bytes(range(256)) * 40)
    raw = bytearray(path.read_bytes())
    if method == 99:  # a compression method zipfile does not implement, in both headers
        central = raw.find(b"PK\x01\x02")
        raw[8:10] = raw[central + 10 : central + 12] = struct.pack("<H", 99)
    else:
        raw[60:100] = b"\xff" * 40  # corrupt the compressed stream
    path.write_bytes(bytes(raw))
    assert any("unreadable zip archive" in p for p in problems(path))


def test_a_safetensors_header_nested_too_deep_for_the_json_parser_is_a_clear_rejection(tmp_path: Path) -> None:
    raw = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    assert any("header is not JSON" in p for p in problems(path))


def npy_bytes(array: np.ndarray, descr: str | None = None) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    raw = buffer.getvalue()
    if descr is None:
        return raw
    (length,) = struct.unpack("<H", raw[8:10])
    header = raw[10 : 10 + length].replace(b"'|O'", repr(descr).encode()).rstrip()
    return raw[:10] + header.ljust(length - 1) + b"\n" + raw[10 + length :]


@pytest.mark.parametrize("descr", ["object", "O8", "|O"])
def test_a_npy_whose_dtype_holds_objects_is_rejected_however_the_descr_spells_it(tmp_path: Path, descr: str) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(npy_bytes(np.array([{"a": 1}], dtype=object), descr))
    assert np.lib.format.read_array_header_1_0(io.BytesIO(path.read_bytes()[8:]))[2].hasobject
    assert any("payload is a pickle" in p for p in problems(path))


def test_a_npy_of_plain_numbers_is_accepted_as_data(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(npy_bytes(np.arange(8, dtype=np.float32)))
    assert problems(path) == []


OPAQUE_MEMBERS = [
    ("model.weights.h5", b"\x89HDF\r\n\x1a\n"),
    ("m.gguf", b"GGUF\x03\x00\x00\x00"),
    ("m.tflite", b"\x1c\x00\x00\x00TFL3"),
]


@pytest.mark.parametrize(("member", "head"), OPAQUE_MEMBERS)
def test_a_format_that_cannot_be_inspected_is_refused_inside_an_archive_as_at_the_top(
    tmp_path: Path, member: str, head: bytes
) -> None:
    path = tmp_path / "model.keras"  # a Keras v3 file is a zip: config.json plus an HDF5 of weights
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", b'{"class_name": "Functional"}')
        archive.writestr(member, head + bytes(64))
    found = problems(path)
    assert any(member in p and "cannot be inspected" in p for p in found), found
    assert problems(path, SupplyChainPolicy(allow_unknown_formats=True)) == []  # the policy's explicit opt-in


def test_raw_storage_members_of_a_pytorch_zip_are_not_taken_for_opaque_formats(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")  # an empty dict: no globals
        archive.writestr("model/data/0", np.arange(64, dtype=np.float32).tobytes())
    assert not any("cannot be inspected" in p for p in problems(path, SupplyChainPolicy(allow_pickle=True)))


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


EVIL_DATA_PKL = b"\x80\x02cos\nsystem\n(S'id'\ntR."


def test_a_second_zip_appended_to_a_hostile_one_does_not_hide_it(tmp_path: Path) -> None:
    # zipfile reads only the last central directory (the benign zip); a reader that walks local headers
    # from the front, or trusts the first zip's offsets, loads the hostile data.pkl it never saw
    hostile = zip_bytes({"archive/data.pkl": EVIL_DATA_PKL})
    benign = zip_bytes({"archive/data.pkl": b"\x80\x02ccollections\nOrderedDict\n)R."})
    path = tmp_path / "model.pt"
    path.write_bytes(hostile + benign)
    found = problems(path, SupplyChainPolicy(allow_pickle=True))
    assert any("no listed member" in p for p in found), found


def test_a_local_entry_left_out_of_the_central_directory_is_rejected(tmp_path: Path) -> None:
    data = zip_bytes({"archive/data.pkl": EVIL_DATA_PKL, "archive/version": b"3\n"})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        second = archive.getinfo("archive/version")
        start = archive.start_dir
    directory = data[start:]
    first_entry_len = 46 + len("archive/data.pkl")
    # drop data.pkl's central entry and fix the counts, size and offset in the end record
    end = bytearray(directory[first_entry_len:])
    tail = end.rindex(b"PK\x05\x06")
    struct.pack_into("<HHII", end, tail + 8, 1, 1, tail, start)  # entries, directory size, offset
    path = tmp_path / "model.pt"
    path.write_bytes(data[:start] + bytes(end))
    assert second.header_offset > 0
    found = problems(path, SupplyChainPolicy(allow_pickle=True))
    assert any("no listed member" in p for p in found), found


def test_a_data_pkl_that_does_not_sniff_as_a_pickle_is_still_scanned_as_one(tmp_path: Path) -> None:
    # torch.load unpickles data.pkl whatever it looks like: a member named .pkl is never raw bytes
    path = tmp_path / "model.pt"
    path.write_bytes(zip_bytes({"archive/data.pkl": b"\xff" + EVIL_DATA_PKL, "archive/data/0": bytes(64)}))
    found = problems(path, SupplyChainPolicy(allow_pickle=True))
    assert any("archive/data.pkl" in p and "never a pass" in p for p in found), found


def test_a_keras_v3_archive_is_refused_even_without_weights(tmp_path: Path) -> None:
    # load_model builds the model from config.json before it looks for weights, and the config
    # names Python callables it imports (CVE-2025-1550, safe_mode or not)
    config = {"module": "keras", "class_name": "Functional", "config": {"layers": [{"class_name": "Lambda"}]}}
    path = tmp_path / "model.keras"
    path.write_bytes(zip_bytes({"config.json": json.dumps(config).encode(), "metadata.json": b"{}"}))
    found = problems(path)
    assert any("config.json" in p and "Keras" in p for p in found), found
    assert problems(path, SupplyChainPolicy(allow_unknown_formats=True)) == []


def test_a_zipped_hugging_face_directory_with_its_config_json_is_not_taken_for_keras(tmp_path: Path) -> None:
    config = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 8}
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    weights = write_safetensors(tmp_path / "w.safetensors", header,
                                np.ones(4, dtype=np.float32).tobytes())
    path = tmp_path / "model.zip"
    path.write_bytes(zip_bytes({"config.json": json.dumps(config).encode(), "model.safetensors": weights.read_bytes()}))
    weights.unlink()
    assert problems(path) == []


JOBLIB_COMPRESSORS = {
    "zlib": zlib.compress,  # joblib.dump(compress=3) writes a bare zlib stream of the pickle
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
}


@pytest.mark.parametrize("compressor", sorted(JOBLIB_COMPRESSORS))
def test_a_joblib_compressed_pickle_is_refused_inside_an_archive_and_at_the_top(
    tmp_path: Path, compressor: str
) -> None:
    data = JOBLIB_COMPRESSORS[compressor](EVIL_DATA_PKL)
    archive = tmp_path / "model.zip"
    archive.write_bytes(zip_bytes({"model.joblib": data}))
    top = tmp_path / "model.joblib"
    top.write_bytes(data)
    for path, policy in [(archive, SupplyChainPolicy()), (top, SupplyChainPolicy(allow_unknown_formats=True))]:
        found = problems(path, policy)
        assert any("compressed pickle" in p for p in found), (path.name, found)


def test_an_lz4_frame_inside_an_archive_is_refused_as_a_nested_archive(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    path.write_bytes(zip_bytes({"model.joblib": b"\x04\x22\x4d\x18" + bytes(64)}))
    assert any("nested lz4" in p for p in problems(path))


def test_raw_storage_that_starts_like_a_zlib_stream_is_still_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    path.write_bytes(zip_bytes({"archive/data/0": zlib.compress(bytes(64)) + bytes(64)}))
    assert problems(path) == []


def hugging_face_dir(tmp_path: Path, config: dict[str, object], files: dict[str, str]) -> Path:
    model = tmp_path / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(config))
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    write_safetensors(model / "model.safetensors", header, np.ones(4, dtype=np.float32).tobytes())
    for name, text in files.items():
        (model / name).write_text(text)
    return model


def test_python_source_shipped_with_the_weights_is_refused_unless_the_policy_allows_code(tmp_path: Path) -> None:
    # transformers imports a model directory's modeling_*.py under trust_remote_code
    source = "from os import system\n\nsystem('id')\n"
    model = hugging_face_dir(tmp_path, {"model_type": "bert"}, {"modeling_evil.py": source, "README.md": "# a model\n"})
    found = problems(model)
    assert len(found) == 1 and "source code (.py)" in found[0], found
    assert problems(model, SupplyChainPolicy(allow_code_files=True)) == []


def test_a_config_json_naming_remote_code_is_refused_and_a_plain_one_passes(tmp_path: Path) -> None:
    remote = {"model_type": "evil", "auto_map": {"AutoModel": "someone/repo--modeling_evil.EvilModel"}}
    found = problems(hugging_face_dir(tmp_path / "a", remote, {}))
    assert len(found) == 1 and "auto_map" in found[0], found
    assert problems(hugging_face_dir(tmp_path / "b", {"model_type": "bert", "architectures": ["BertModel"]}, {})) == []
