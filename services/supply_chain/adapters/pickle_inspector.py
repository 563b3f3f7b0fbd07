"""List every global a pickle stream would import, by parsing opcodes without executing them.

A light stack machine follows ``pickletools`` opcode stack effects and the memo, so the module and
name strings under STACK_GLOBAL are resolved even when they come back from the memo. Anything the
parser cannot read, or a STACK_GLOBAL whose names are not plain strings, is an error, never a pass.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass
from typing import IO, Any

from .pickle_ops import genops

_MARK = object()
_UNKNOWN = object()
_STRINGS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
)
_EXTENSIONS = frozenset({"EXT1", "EXT2", "EXT4"})


class PickleParseError(ValueError):
    """The stream is not a pickle the parser can read to the end."""


@dataclass(frozen=True)
class PickleScan:
    globals: tuple[str, ...]  # "module.name", in order of first appearance
    pickles: int


class _Machine:
    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self.globals: dict[str, None] = {}

    def pop(self, count: int) -> list[Any]:
        if count > len(self.stack):
            raise PickleParseError("stack underflow")
        taken = self.stack[len(self.stack) - count :]
        del self.stack[len(self.stack) - count :]
        if any(item is _MARK for item in taken):
            raise PickleParseError("MARK consumed as a value")
        return taken

    def pop_mark(self) -> None:
        while self.stack:
            if self.stack.pop() is _MARK:
                return
        raise PickleParseError("no MARK on the stack")

    def step(self, op: pickletools.OpcodeInfo, arg: Any) -> None:
        name, before = op.name, op.stack_before
        if name in _EXTENSIONS:
            raise PickleParseError(f"{name}: extension-registry globals cannot be checked")
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            self.globals.setdefault(f"{module}.{attr}", None)
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not self.stack or self.stack[-1] is _MARK:
                raise PickleParseError(f"{name} with nothing to store")
            self.memo[len(self.memo) if name == "MEMOIZE" else int(arg)] = self.stack[-1]
            return
        if name in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:
                raise PickleParseError(f"{name} of memo key {arg} never stored")
            self.stack.append(self.memo[int(arg)])
            return
        has_mark = pickletools.markobject in before
        if has_mark or (name == "POP" and self.stack and self.stack[-1] is _MARK):
            self.pop_mark()
            before = before[: before.index(pickletools.markobject)] if has_mark else []
        taken = self.pop(len(before))
        if name == "STACK_GLOBAL":
            module, attr = taken
            if not (isinstance(module, str) and isinstance(attr, str)):
                raise PickleParseError("STACK_GLOBAL with names that are not literal strings")
            self.globals.setdefault(f"{module}.{attr}", None)
        if name == "DUP":
            self.stack += taken * 2
            return
        for item in op.stack_after:
            is_mark = item is pickletools.markobject
            self.stack.append(_MARK if is_mark else arg if name in _STRINGS else _UNKNOWN)


def would_import(stream: IO[bytes]) -> bool:
    """True when ``pickle.load`` from byte 0 would import a global named by identifiers before failing.

    For content another format already claims (a tar, a safetensors file): such a prefix makes it a
    pickle too, which a loader picked by file name (``torch.load``, ``joblib.load``) would run.
    """
    machine = _Machine()
    try:
        for op, arg, _pos in genops(stream):
            machine.step(op, arg)
    except Exception:  # the first error ends what pickle.load would run
        pass
    return any(all(part.isidentifier() for part in name.split(".")) for name in machine.globals)


def scan_pickle(stream: IO[bytes], limit: int) -> PickleScan:
    """Parse one or more concatenated pickles to the end of ``stream`` (which must support ``peek``).

    Raises:
        PickleParseError: malformed, truncated or over ``limit`` bytes; trailing non-pickle bytes.
    """
    found: dict[str, None] = {}
    count = 0
    while count == 0 or stream.peek(1)[:1]:  # type: ignore[attr-defined]
        machine, stopped = _Machine(), False
        try:
            for op, arg, pos in genops(stream):
                if pos is not None and pos > limit:
                    raise PickleParseError(f"pickle stream longer than {limit} bytes")
                machine.step(op, arg)
                stopped = op.name == "STOP"
        except PickleParseError:
            raise
        except Exception as exc:  # genops raises ValueError, EOFError, struct/unicode errors...
            raise PickleParseError(f"unreadable pickle stream: {type(exc).__name__}: {exc}"[:300]) from exc
        if not stopped:
            raise PickleParseError("pickle stream ends without STOP")
        found.update(machine.globals)
        count += 1
    return PickleScan(tuple(found), count)
