"""Pickle opcodes read the way ``_pickle`` (the C unpickler behind ``pickle.load``) reads them.

``pickletools.genops`` decodes the newline-terminated protocol-0 arguments more strictly than
``_pickle``: ``I0x10`` and ``I010`` (INT goes through C ``strtol`` with base 0, where a leading zero
means octal; ``I01`` is how protocol 0 writes True), ``F1.5\\0junk`` (a C string ends at NUL) and
UTF-8 module names are errors to it but not to ``pickle.load``. A stream that looks broken to the
scanner from its first opcode while ``pickle.load`` runs it would pass as text, so those arguments
are decoded here as ``_pickle`` decodes them; every other argument keeps its ``pickletools`` reader.
"""

from __future__ import annotations

import codecs
import pickletools
import re
from collections.abc import Iterator
from typing import IO, Any

_BY_CODE = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
# what C strtol(s, &end, 0) accepts: blanks, a sign, then hex, octal (a leading 0) or decimal digits
_STRTOL = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_C_LONG = range(-(2**63), 2**63)


def _line(stream: IO[bytes]) -> bytes:
    data = stream.readline()
    if not data.endswith(b"\n"):
        raise ValueError("no newline found when reading a protocol-0 argument")
    return data[:-1]


def _quoted(text: bytes) -> str:
    if len(text) < 2 or text[:1] not in (b"'", b'"') or text[:1] != text[-1:]:
        raise ValueError("the STRING opcode argument must be quoted")
    return str(codecs.escape_decode(text[1:-1])[0], "latin-1")


def _c_int(number: bytes) -> int:
    """INT as ``_pickle`` reads it: ``strtol`` with base 0 to the end, else ``int(number, 0)``."""
    if not number:  # strtol converts nothing, and its end pointer is already on the NUL
        return 0
    match = _STRTOL.match(number)
    if match and match.end() == len(number):
        sign, digits = match.groups()
        base = 16 if digits[1:2] in (b"x", b"X") else 8 if digits.startswith(b"0") else 10
        value = int(sign + digits, base)
        if value in _C_LONG:  # an overflowing strtol falls back to Python's parser, as below
            return value
    return int(number, 0)


def _line_argument(name: str, stream: IO[bytes]) -> Any:
    text = _line(stream)
    if name in ("GLOBAL", "INST"):
        return f"{text.decode('utf-8')} {_line(stream).decode('utf-8')}"
    if name == "PERSID":
        return text.decode("ascii")
    if name == "STRING":
        return _quoted(text)
    if name == "UNICODE":
        return text.decode("raw-unicode-escape")
    number = text.removesuffix(b"L") if name == "LONG" else text
    number = number.split(b"\x00", 1)[0]  # _pickle hands numbers to C parsers: a NUL ends them
    if name == "FLOAT":
        return float(number)
    if name == "INT" and text:  # an empty line is an error to _pickle, a NUL-ended one is not
        return _c_int(number)
    return int(number, 0 if name == "LONG" else 10)


def genops(stream: IO[bytes]) -> Iterator[tuple[pickletools.OpcodeInfo, Any, int | None]]:
    """Yield ``(opcode, argument, position)`` up to and including STOP, like ``pickletools.genops``.

    Raises:
        ValueError: an unknown opcode, a truncated stream or an argument ``_pickle`` would reject too.
    """
    tell = stream.tell if hasattr(stream, "tell") else None
    while True:
        pos = tell() if tell is not None else None
        code = stream.read(1)
        op = _BY_CODE.get(code)
        if op is None:
            raise ValueError(f"opcode {code!r} unknown at position {pos}" if code else "no STOP before the end")
        if op.arg is None:
            arg = None
        elif op.arg.n == pickletools.UP_TO_NEWLINE:
            arg = _line_argument(op.name, stream)
        else:
            arg = op.arg.reader(stream)
        yield op, arg, pos
        if op.name == "STOP":
            return
