"""Report writers: JSON, a self-contained HTML page (triggers, per-class bar charts and the dormant-feature map
inline as PNG) and SARIF 2.1.0."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from PIL import Image, ImageDraw

from services.scanner.domain.all_to_all import KEY as ALL_TO_ALL_KEY
from services.scanner.domain.detectors.base import UNIVERSAL, DetectionResult
from services.scanner.domain.input_layout import trigger_in_model_layout
from services.scanner.domain.policy import Verdict

Arr = np.ndarray[Any, Any]


def trigger_png(mask: Arr, pattern: Arr, scale: int = 8) -> bytes:
    """PNG of ``mask * pattern`` (flat inputs are folded into a square when they can be, inputs of more
    than two axes into rows of the last one)."""
    img = np.asarray(pattern, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    img = img.mean(axis=0) if img.ndim == 3 and m.ndim == 2 else img  # colour image: mean over channels
    if m.ndim > 2:  # another layout (video, volumes): rows of the last axis
        img, m = img.reshape(-1, img.shape[-1]), m.reshape(-1, m.shape[-1])
    if img.ndim == 1:
        side = math.isqrt(img.size)
        shape = (side, side) if side * side == img.size else (1, img.size)
        img, m = img.reshape(shape), m.reshape(shape)
    shown = m * img
    lo, hi = float(shown.min()), float(shown.max())
    px = np.round(255 * (shown - lo) / (hi - lo if hi > lo else 1.0)).astype(np.uint8)
    h, w = int(px.shape[0]), int(px.shape[1])
    pil = Image.fromarray(px, mode="L").resize((w * scale, h * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def _triggers(r: DetectionResult) -> dict[str, str]:
    return {str(c): base64.b64encode(trigger_png(m, p)).decode() for c, (m, p) in r.triggers.items()}


def report_dict(verdict: Verdict, meta: dict[str, Any]) -> dict[str, Any]:
    out = {**meta, **verdict.to_dict()}
    for det, r in zip(out["detectors"], verdict.results, strict=True):
        if r.triggers:
            det["triggers_png_base64"] = _triggers(r)
    return out


def baseline_l1(path: Path) -> list[float]:
    """Per-class Neural Cleanse mask sizes from an earlier JSON report (the clean baseline)."""
    try:
        report = orjson.loads(path.read_bytes())
        nc = next(d for d in report["detectors"] if d["key"].startswith("neural_cleanse."))
        return [float(v) for v in nc["evidence"]["l1_norms"]]
    except (OSError, orjson.JSONDecodeError, KeyError, StopIteration, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a scan report with Neural Cleanse results: {exc!r}") from exc


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def write_html(report: dict[str, Any], path: Path) -> None:
    esc = html.escape
    model = report.get("model", report.get("model_path"))
    verdict = "BACKDOOR DETECTED" if report["backdoor_detected"] else "no backdoor found"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>bdguard scan {esc(str(model))}"
             "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{image-rendering:pixelated;margin:4px}"
             ".bad{color:#b00}.ok{color:#070}</style></head><body>",
             f"<h1>Backdoor Guard report</h1><p>Model: <code>{esc(str(model))}</code></p>",
             f"<h2 class='{'bad' if report['backdoor_detected'] else 'ok'}'>{verdict}</h2>",
             f"<p>confidence {report['confidence']:.3f}; target classes {esc(str(report['target_classes']))};"
             f" block deployment: {report['block_deployment']}</p>",
             *(f"<p class='note'>Note: {esc(n)}</p>" for n in report.get("notes", [])),
             "<table><tr><th>detector</th><th>verdict</th><th>score</th><th>threshold</th><th>targets</th>"
             "<th>seconds</th></tr>"]
    for d in report["detectors"]:
        parts.append(f"<tr><td>{esc(d['key'])}</td><td>{esc(d['verdict'])}</td><td>{d['score']:.3f}</td>"
                     f"<td>{d['threshold']:.3f}</td><td>{esc(str(d['target_classes']))}</td><td>{d['seconds']}</td></tr>")
    parts.append("</table>")
    for d in report["detectors"]:
        parts.append(f"<h3>{esc(d['key'])}</h3><table>")
        for k, v in d["evidence"].items():
            if k not in PICTURED:
                parts.append(f"<tr><th>{esc(str(k))}</th><td><code>{esc(orjson.dumps(v).decode())}</code></td></tr>")
        parts.append("</table>")
        if pictured := d["evidence"].get("push_map"):
            parts.append(_push_map_figure(pictured))
        if charted := _class_chart(d):
            parts.append(charted)
        for c, png in d.get("triggers_png_base64", {}).items():
            name = "universal (any class)" if c == "-1" else f"class {c}"  # the untargeted trigger
            parts.append(_figure(png, name, alt=f"reversed trigger {name}"))
    if report.get("suspicious_indices"):
        parts.append(f"<h3>Suspicious samples ({len(report['suspicious_indices'])})</h3>"
                     f"<p><code>{esc(str(report['suspicious_indices'][:500]))}</code></p>")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")


PICTURED = ("push_map",)  # evidence shown as an image on the HTML page rather than as numbers (the JSON keeps them)


def _push_map_figure(pictured: dict[str, Any]) -> str:
    """The dormant-feature detector's map: which of the features the clean data never uses push the model
    toward its top class, and how hard (brighter: harder)."""
    values = np.asarray(pictured["values"], dtype=np.float64).reshape(pictured["shape"])
    png = base64.b64encode(trigger_png(np.ones_like(values), values)).decode()
    return _figure(png, f"dormant features pushing toward class {int(pictured['class'])}")


CHARTED = ("class_scores", "dormant_class_scores")  # per-class indices drawn as bars against the detector's bar


def class_scores_png(scores: list[float], threshold: float, bar: int = 24, height: int = 120) -> bytes:
    """A bar per class (class 0 on the left), up for positive indices and down for negative ones, red when
    over ``threshold`` (drawn as a line), grey otherwise."""
    values = np.nan_to_num(np.asarray(scores, dtype=np.float64))
    top = max(float(values.max(initial=0.0)), threshold, 1e-9)
    bottom = min(float(values.min(initial=0.0)), 0.0)
    scale = (height - 8) / (top - bottom)
    zero = 4 + top * scale
    img = Image.new("RGB", (bar * len(values) + 8, height), "white")
    draw = ImageDraw.Draw(img)
    for c, v in enumerate(values):
        x0, y = 4 + c * bar + 3, zero - v * scale
        draw.rectangle([x0, min(y, zero), x0 + bar - 6, max(y, zero)], fill=(200, 30, 30) if v > threshold
                       else (150, 150, 150))
    draw.line([0, zero, img.width, zero], fill=(0, 0, 0))
    line = zero - threshold * scale
    for x in range(0, img.width, 8):  # dashed: the detector's bar
        draw.line([x, line, x + 4, line], fill=(200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _class_chart(detector: dict[str, Any]) -> str:
    """The detector's per-class index as a bar chart (nothing when it published none)."""
    name = next((n for n in CHARTED if detector["evidence"].get(n)), None)
    if name is None:
        return ""
    scores = detector["evidence"][name]
    png = base64.b64encode(class_scores_png(scores, float(detector["threshold"]))).decode()
    return _figure(png, f"per-class index, classes 0-{len(scores) - 1} left to right; dashed: the bar "
                        f"({detector['threshold']:.2f})")


def _figure(png_base64: str, caption: str, alt: str | None = None) -> str:
    """An inline PNG with its caption (and ``alt`` text, the caption by default)."""
    return (f"<figure style='display:inline-block'><img alt='{html.escape(alt or caption)}' "
            f"src='data:image/png;base64,{png_base64}'><figcaption>{html.escape(caption)}</figcaption></figure>")


def write_sarif(report: dict[str, Any], path: Path, artifact: str) -> None:
    rules = [{"id": d["key"], "shortDescription": {"text": f"backdoor detector {d['key']}"}}
             for d in report["detectors"]]
    results = [{"ruleId": d["key"], "level": "error" if report["block_deployment"] else "warning",
                "message": {"text": f"{d['key']} {_flagged_what(d)} "
                                    f"(score {d['score']:.3f} > threshold {d['threshold']:.3f})"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}}}],
                "properties": {"score": d["score"], "threshold": d["threshold"]}}
               for d in report["detectors"] if d["verdict"] == "suspicious"]
    sarif = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
             "runs": [{"tool": {"driver": {"name": "bdguard-scanner", "rules": rules}}, "results": results,
                       "properties": {"backdoor_detected": report["backdoor_detected"],
                                      "confidence": report["confidence"]}}]}
    path.write_bytes(orjson.dumps(sarif, option=orjson.OPT_INDENT_2))


def _flagged_what(detector: dict[str, Any]) -> str:
    """What a flagging detector points at: its target classes, or what its note says (all-to-all: none)."""
    if detector["target_classes"]:
        return f"flags target classes {detector['target_classes']}"
    note = detector["evidence"].get("note")
    return f"flags the model: {note}" if note else "flags the model"


def write_triggers(verdict: Verdict, path: Path) -> int:
    """Reversed triggers of the target classes as ``mask_<c>``/``pattern_<c>`` arrays (npz, no pickle), and
    the universal trigger of a flagging all-to-all check as ``mask_universal``/``pattern_universal``.

    The telemetry client's trigger library loads this file, so what the scanner reverse-engineered
    is matched against live inputs. Returns how many triggers were written (none: no file).
    """
    arrays: dict[str, np.ndarray] = {}
    for result in verdict.results:
        universal = result.key == ALL_TO_ALL_KEY and result.flagged
        for cls, (mask, pattern) in result.triggers.items():
            name = "universal" if universal and cls == UNIVERSAL else str(cls)
            if (name == "universal" or cls in verdict.target_classes) and f"mask_{name}" not in arrays:
                # stamped onto live inputs by other services: in the model's own layout
                arrays[f"mask_{name}"], arrays[f"pattern_{name}"] = trigger_in_model_layout(mask, pattern,
                                                                                            verdict.input_layout)
    if arrays:
        with path.open("wb") as fh:  # a file object: np.savez would add ".npz" to a path without it
            np.savez(fh, **arrays)  # type: ignore[arg-type]
    return len(arrays) // 2
