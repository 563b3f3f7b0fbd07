"""Digest strings: parsing, canonical directory manifests, constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST = re.compile(r"^(sha256|sha384|sha512):([0-9a-f]+)$")


class DigestFormatError(ValueError):
    """A digest string is not ``<algorithm>:<lower-case hex>`` of the right length."""


def parse_digest(value: str, algorithms: tuple[str, ...] = ("sha256",)) -> tuple[str, str]:
    """Split ``"sha256:<hex>"`` into ``(algorithm, hex)``.

    Raises:
        DigestFormatError: unknown algorithm, upper-case or non-hex characters, wrong length.
    """
    match = _DIGEST.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise DigestFormatError(f"not '<algorithm>:<lower-case hex>': {value!r:.80}")
    algorithm, hexdigest = match.group(1), match.group(2)
    if algorithm not in algorithms:
        raise DigestFormatError(f"algorithm {algorithm!r} not accepted (accepted: {', '.join(algorithms)})")
    if len(hexdigest) != HEX_LENGTHS[algorithm]:
        raise DigestFormatError(f"{algorithm} needs {HEX_LENGTHS[algorithm]} hex digits, got {len(hexdigest)}")
    return algorithm, hexdigest


def digests_match(declared_hex: str, computed_hex: str) -> bool:
    """Compare two hex digests in constant time."""
    return hmac.compare_digest(declared_hex.encode("ascii"), computed_hex.encode("ascii"))


def manifest_digest(file_digests: Mapping[str, str]) -> str:
    """Digest of a directory: SHA-256 over ``sha256sum``-style lines ``"<hex>  <path>\\n"``, sorted by path.

    Args:
        file_digests: relative POSIX path -> hex SHA-256 of that file.
    """
    lines = "".join(f"{file_digests[p]}  {p}\n" for p in sorted(file_digests))
    return "sha256:" + hashlib.sha256(lines.encode("utf-8")).hexdigest()
