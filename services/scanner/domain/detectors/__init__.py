"""Detector plugins; importing this package registers every built-in detector."""

from services.scanner.domain.detectors import (
    activation_clustering,
    all_to_all_poison,
    dormant_features,
    joint_split,
    label_consistency,
    mmbd,
    neural_cleanse,
    spectral,
    stamped_trigger,
    strip,
    trigger_response,
)
from services.scanner.domain.detectors.base import REGISTRY, DetectionResult, Detector, NotFittedError, create

__all__ = ["REGISTRY", "DetectionResult", "Detector", "NotFittedError", "activation_clustering", "all_to_all_poison",
           "create", "dormant_features",
           "joint_split", "label_consistency", "mmbd", "neural_cleanse", "spectral", "stamped_trigger", "strip",
           "trigger_response"]
