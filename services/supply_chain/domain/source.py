"""Source URL check: https, an allowlist matched on host and path segments, and the tricks around it.

Each rule targets a class of trick rather than a fixture: anything non-ASCII or punycode,
encoded or escaped characters, userinfo, raw and integer IP forms, ports, trusted names embedded
elsewhere, typosquats, subdomains, and path prefixes that do not end on a segment boundary.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .lookalike import looks_like, scripts, skeleton

_HOST_CHARS = re.compile(r"^[a-z0-9.-]+$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


@dataclass(frozen=True)
class TrustedSource:
    host: str
    path_prefix: str  # "" = any path; otherwise "/seg[/seg...]" matched on segment boundaries

    @classmethod
    def parse(cls, entry: str) -> TrustedSource:
        entry = entry.strip().lower().removeprefix("https://")
        host, _, path = entry.partition("/")
        return cls(host=host.rstrip("."), path_prefix=("/" + path.strip("/")) if path.strip("/") else "")

    def covers_path(self, path: str) -> bool:
        prefix = self.path_prefix
        return not prefix or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class SourceAssessment:
    trusted: bool
    host: str
    tricks: tuple[str, ...]  # deliberate-looking deception: critical
    problems: tuple[str, ...]  # plain policy violations: high
    matched: str | None


def _raw_findings(url: str, names: list[str]) -> list[str]:
    tricks = []
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        tricks.append("control or whitespace characters in URL")
    if "\\" in url:
        tricks.append("backslash in URL (parsers disagree on it)")
    if "%" in url:
        tricks.append("percent-encoded characters in URL")
    if not url.isascii():
        found = sorted(scripts(url))
        note = f"non-ASCII characters in URL (scripts: {'+'.join(found) or 'none'})"
        folded = skeleton(urlsplit(url).netloc.rpartition("@")[2])
        note += "".join(f"; homograph of {n!r}" for n in names if skeleton(n) == folded)
        tricks.append(note)
    return tricks


def _host_findings(host: str) -> list[str]:
    tricks = []
    if host.startswith("["):
        return ["raw IPv6 address as host"]
    try:
        ipaddress.ip_address(host)
        return ["raw IP address as host"]
    except ValueError:
        pass
    labels = host.split(".")
    if all(_NUMERIC_LABEL.match(label) for label in labels if label):
        return ["integer, hex or octal IP address form as host"]
    if _NUMERIC_LABEL.match(labels[-1]):
        tricks.append("numeric last label (browsers parse the host as an IPv4 address)")
    for label in labels:
        if label.startswith("xn--"):
            try:
                decoded = label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                decoded = "?"
            tricks.append(f"punycode (IDN) label {label!r} = {decoded!r}, scripts {sorted(scripts(decoded))}")
    if host.endswith("."):
        tricks.append("trailing dot in host")
    if host.isascii() and not _HOST_CHARS.match(host):
        tricks.append("characters not allowed in a host name")
    return tricks


def _lookalike(host: str, trusted: list[TrustedSource]) -> tuple[list[str], list[str]]:
    tricks, problems = [], []
    for source in trusted:
        name = source.host
        brand = name.split(".")[-2] if name.count(".") >= 1 else name
        if host.endswith("." + name):
            problems.append(f"subdomain of {name!r} is not itself trusted")
        elif host.split(".")[-2:] == name.split(".")[-2:]:
            problems.append(f"host shares the domain of {name!r} but is not itself trusted")
        elif reason := looks_like(host, name) or looks_like(host.split(".")[0], name.split(".")[0]):
            tricks.append(f"host {reason}")
        elif name in host or (len(brand) >= 5 and brand in host):
            tricks.append(f"lookalike host embeds trusted name {name!r}")
    return sorted(set(tricks)), sorted(set(problems))


def assess_source(url: str, trusted_entries: tuple[str, ...]) -> SourceAssessment:
    """Decide whether ``url`` is an https URL under one of ``trusted_entries`` (``host[/path]``)."""
    trusted = [TrustedSource.parse(e) for e in trusted_entries if e.strip()]
    names = sorted({t.host for t in trusted})
    tricks, problems = _raw_findings(url, names), []
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # validates the port syntax
    except ValueError as exc:
        return SourceAssessment(False, "", (*tricks, f"unparseable URL: {exc}"), (), None)
    if parts.fragment or "#" in parts.netloc:
        tricks.append("fragment in a download URL (parsers disagree on where the host ends)")
    if "@" in parts.path or "@" in parts.query:
        tricks.append("'@' after the host (userinfo look-alike)")
    if parts.scheme.lower() != "https":
        problems.append(f"scheme {parts.scheme or '(none)'!r} is not https")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        tricks.append(f"userinfo {userinfo!r} before the real host")
    host, port = hostport.lower(), None
    if not host.startswith("[") and ":" in host:
        host, _, port = host.rpartition(":")
    if port is not None and port != "443":
        tricks.append(f"non-default port {port!r}")
    if not host:
        return SourceAssessment(False, "", (*tricks, "no host"), tuple(problems), None)
    tricks += _host_findings(host)
    segments = parts.path.split("/")[1:]
    if any(seg in (".", "..") for seg in segments):
        tricks.append("dot segments in path")
    if any(seg == "" for seg in segments[:-1]):
        tricks.append("empty path segment ('//') in path")
    same_host = [t for t in trusted if t.host == host]
    matched = next((t for t in same_host if t.covers_path(parts.path)), None)
    if same_host and matched is None:
        prefixes = ", ".join(repr(t.path_prefix) for t in same_host)
        problems.append(f"path {parts.path!r} is not under the trusted prefix {prefixes} (segment boundary)")
    elif not same_host:
        more_tricks, more_problems = _lookalike(host, trusted)
        tricks += more_tricks
        problems += more_problems or ([] if more_tricks else [f"host {host!r} is not on the allowlist"])
    label = f"{matched.host}{matched.path_prefix}" if matched else None
    ok = matched is not None and not tricks and not problems
    return SourceAssessment(ok, host, tuple(tricks), tuple(problems), label)
