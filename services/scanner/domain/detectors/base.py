"""Detector protocol, shared workflow, result envelope and registry (alibi-detect / sklearn shape)."""

from __future__ import annotations

import inspect
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import numpy as np

from services.scanner.domain.model import Dataset, FloatArray, ModelHandle

Level = Literal["model", "data"]


class NotFittedError(RuntimeError):
    """``result()`` was asked before ``fit()``."""


@dataclass(frozen=True)
class Finding:
    """What one detector's scoring produced (before a threshold is applied)."""

    score: float
    target_classes: list[int] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    suspicious_indices: list[int] = field(default_factory=list)
    triggers: dict[int, tuple[FloatArray, FloatArray]] = field(default_factory=dict)  # class -> (mask, pattern)


UNIVERSAL = -1  # key of an untargeted (universal) trigger among a result's triggers, next to the class keys


@dataclass(frozen=True)
class DetectionResult:
    """The envelope every detector returns. ``score``: higher = more suspicious."""

    key: str
    score: float
    threshold: float
    verdict: Literal["suspicious", "clean"]
    target_classes: list[int]
    evidence: dict[str, Any]
    suspicious_indices: list[int]
    seconds: float
    triggers: dict[int, tuple[FloatArray, FloatArray]] = field(default_factory=dict, repr=False)

    @property
    def flagged(self) -> bool:
        return self.verdict == "suspicious"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (trigger arrays are left to the report writer)."""
        return {"key": self.key, "score": self.score, "threshold": self.threshold, "verdict": self.verdict,
                "target_classes": self.target_classes, "suspicious_indices": self.suspicious_indices,
                "seconds": round(self.seconds, 4), "evidence": self.evidence}


class DetectorProtocol(Protocol):
    key: ClassVar[str]
    level: ClassVar[Level]

    def fit(self, model: ModelHandle, data: Dataset) -> DetectorProtocol: ...

    def result(self) -> DetectionResult: ...


D = TypeVar("D", bound="Detector")


class Detector(ABC):
    """Base class: owns validation, timing, seeding, thresholding; subclasses implement ``_score``.

    Subclass ``__init__`` takes keyword parameters only, stores each under its own name and checks
    it with :meth:`_require`. Learned state ends in ``_``.
    """

    key: ClassVar[str]
    level: ClassVar[Level]
    default_threshold: ClassVar[float]

    def __init__(self, *, threshold: float | None = None, seed: int = 0) -> None:
        self._require("threshold", threshold, threshold is None or math.isfinite(threshold))
        self._require("seed", seed, isinstance(seed, int) and seed >= 0)
        self.threshold = threshold
        self.seed = seed

    @staticmethod
    def _require(name: str, value: object, ok: bool, what: str = "") -> None:
        if not ok:
            raise ValueError(f"invalid {name}={value!r}{': ' + what if what else ''}")

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters by name (sklearn convention)."""
        names = [name for c in type(self).__mro__ if "__init__" in vars(c)
                 for name, p in inspect.signature(c.__init__).parameters.items()  # type: ignore[misc]
                 if p.kind is inspect.Parameter.KEYWORD_ONLY]
        return {n: getattr(self, n) for n in dict.fromkeys(names)}

    def fit(self: D, model: ModelHandle, data: Dataset) -> D:
        """Run the analysis on ``model`` with ``data`` (clean data for model-level detectors)."""
        if len(data) == 0:
            raise ValueError("data is empty")
        if tuple(data.x.shape[1:]) != tuple(model.input_shape):
            raise ValueError(f"data shape {data.x.shape[1:]} does not match model input {model.input_shape}")
        start = time.perf_counter()
        self.finding_ = self._score(model, data, np.random.default_rng(self.seed))
        self.seconds_ = time.perf_counter() - start
        return self

    def calibrate(self: D, clean_scores: Sequence[float], fpr: float = 0.05) -> D:
        """Set ``threshold_`` so that at most ``fpr`` of the given clean scores exceed it."""
        self._require("fpr", fpr, 0.0 <= fpr < 1.0)
        scores = np.sort(np.asarray(clean_scores, dtype=float))
        self._require("clean_scores", len(scores), len(scores) > 0, "need at least one score")
        self.threshold_ = float(np.quantile(scores, 1.0 - fpr, method="higher"))
        return self

    def effective_threshold(self) -> float:
        return getattr(self, "threshold_", self.threshold if self.threshold is not None else self.default_threshold)

    def result(self) -> DetectionResult:
        if not hasattr(self, "finding_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(model, data) first")
        f, thr = self.finding_, self.effective_threshold()
        flagged = f.score > thr
        return DetectionResult(self.key, round(float(f.score), 6), thr, "suspicious" if flagged else "clean",
                               f.target_classes if flagged else [], f.evidence,
                               f.suspicious_indices if flagged or self.level == "data" else [],
                               self.seconds_, f.triggers)

    @abstractmethod
    def _score(self, model: ModelHandle, data: Dataset, rng: np.random.Generator) -> Finding: ...


REGISTRY: dict[str, type[Detector]] = {}


def register(cls: type[D]) -> type[D]:
    """Class decorator: make a detector available under its versioned ``key``."""
    if cls.key in REGISTRY:
        raise ValueError(f"duplicate detector key {cls.key!r}")
    REGISTRY[cls.key] = cls
    return cls


def create(key: str, **params: Any) -> Detector:
    """Instantiate a registered detector by key (``"neural_cleanse.v2"``) or bare name."""
    matches = [k for k in REGISTRY if k == key or k.split(".")[0] == key]
    if not matches:
        raise KeyError(f"unknown detector {key!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[matches[0]](**params)


def factory_for(level: Level) -> list[str]:
    """Registered keys of one level, sorted."""
    return sorted(k for k, c in REGISTRY.items() if c.level == level)


