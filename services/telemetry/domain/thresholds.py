"""Decision thresholds of the window evaluation (control-card values as defaults)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Thresholds:
    """Every number a window evaluation decides with.

    Statistical tests control the false-alarm rate (``alpha`` per window and test family, Bonferroni
    across classes / patterns); effect-size floors keep huge windows from alerting on tiny effects.

    Args:
        kl_drift: KL(window || baseline) from which class drift is reported (``low``).
        kl_alert: KL from which class drift is rated ``medium``.
        conf_drop: mean-confidence drop below baseline that is reported.
        alpha: false-alarm budget per window for each test family.
        min_window: predictions below which a window is not judged (except trigger matches).
        min_target_excess: surplus predictions of the target class over its expected count.
        min_share_lift: absolute increase of the target class share.
        proportional_alpha: the non-target classes must NOT differ from their baseline proportions
            at this level (targeted attacks take share from all classes alike).
        conf_tolerance: target-class mean confidence may sit at most this far below baseline.
        min_targeted_classes: classes a model needs for a one-class rise to be reported as targeted
            misclassification on its own. With two, the other classes' proportions (the evidence that tells
            an attack from a label shift) are one class and say nothing, so there a rise is reported as
            class drift unless a rare pattern, trigger match or STRIP signal names the same class.
        pattern_min_count: occurrences before a signature component is judged.
        pattern_consistency: share of a component's predictions that fall in its majority class.
        pattern_max_reference_freq: a rare pattern is below this share of baseline traffic.
        trigger_min_matches: library matches in a window before a trigger alert.
        entropy_shift_sd: entropy mean shift, in baseline standard deviations, to call a shift.
        strip_low_quantile: STRIP entropies below this quantile of the baseline's count as "low".
        strip_min_low: low-STRIP predictions of one class in a window before it is judged.
        strip_min_lift: the class's low-STRIP rate must be this many times its baseline rate.
        strip_min_baseline: STRIP-measured baseline predictions needed to use the signal.
    """

    kl_drift: float = 0.05
    kl_alert: float = 0.10
    conf_drop: float = 0.10
    alpha: float = 1e-4
    min_window: int = 200
    min_target_excess: int = 10
    min_share_lift: float = 0.01
    proportional_alpha: float = 1e-3
    conf_tolerance: float = 0.05
    min_targeted_classes: int = 3
    pattern_min_count: int = 8
    pattern_consistency: float = 0.8
    pattern_max_reference_freq: float = 0.01
    trigger_min_matches: int = 3
    entropy_shift_sd: float = 0.5
    strip_low_quantile: float = 0.02
    strip_min_low: int = 8
    strip_min_lift: float = 3.0
    strip_min_baseline: int = 500

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise ValueError(f"{f.name}={value!r}: must be >= 0")
        if not 0 < self.alpha < 1 or not 0 < self.proportional_alpha < 1:
            raise ValueError(
                f"alpha={self.alpha!r}, proportional_alpha={self.proportional_alpha!r}: need (0, 1)")
        if self.kl_alert < self.kl_drift:
            raise ValueError(f"kl_alert={self.kl_alert!r} must be >= kl_drift={self.kl_drift!r}")
        if not 0 < self.pattern_consistency <= 1:
            raise ValueError(f"pattern_consistency={self.pattern_consistency!r}: need (0, 1]")
