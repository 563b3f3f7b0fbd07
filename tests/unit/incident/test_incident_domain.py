from __future__ import annotations

import pytest

from services.incident.domain.incident import Incident, IncidentError, IncidentStatus
from services.incident.domain.severity import RESPOND_WITHIN_S, Severity, Signal, classify, combined_confidence


def _signal(alert_id: str = "a1", kind: str = "targeted_misclassification", source: str = "telemetry",
            hint: str = "critical", prod: bool = True, at: float = 100.0) -> Signal:
    return Signal(alert_id, kind, source, hint, at, prod)


@pytest.mark.parametrize(("signal", "severity"), [
    (_signal(), Severity.CRITICAL),
    (_signal(prod=False), Severity.HIGH),
    (_signal(kind="backdoor_detected", source="scanner", prod=False), Severity.MEDIUM),
    (_signal(kind="supply_chain_rejected", source="supply-chain", prod=False), Severity.MEDIUM),
    (_signal(kind="class_distribution_drift", hint="low"), Severity.LOW),
    (_signal(kind="confidence_drop", hint="medium"), Severity.MEDIUM),
])
def test_alerts_map_onto_the_control_card_severity_classes(signal: Signal, severity: Severity) -> None:
    assert classify(signal) is severity


def test_independent_signals_raise_confidence_but_repeats_of_one_signal_do_not() -> None:
    one = combined_confidence([_signal(hint="high")])
    repeated = combined_confidence([_signal("a1", hint="high"), _signal("a2", hint="high")])
    independent = combined_confidence([_signal("a1", hint="high"),
                                       _signal("a2", kind="rare_input_pattern", hint="high")])
    assert one == repeated == 0.75
    assert independent == pytest.approx(1 - 0.25 * 0.25)


def test_a_confident_backdoor_alert_in_production_opens_a_critical_incident_that_calls_for_rollback() -> None:
    incident = Incident("inc-1", "digits", "3", opened_at=100.0)
    assert incident.add_signal(_signal(), {"share": 0.4}, rollback_confidence=0.85)
    [escalation] = incident.events
    assert (escalation.severity, escalation.action) == (Severity.CRITICAL, "rollback")
    assert escalation.respond_by == 100.0 + RESPOND_WITHIN_S[Severity.CRITICAL]
    assert "ciso" in escalation.responders


def test_a_weak_signal_waits_for_corroboration_before_rollback() -> None:
    incident = Incident("inc-1", "digits", "3", opened_at=100.0)
    incident.add_signal(_signal("a1", hint="high"), {}, rollback_confidence=0.85)
    assert incident.action == "investigate"
    incident.add_signal(_signal("a2", kind="rare_input_pattern", hint="high"), {}, rollback_confidence=0.85)
    assert incident.action == "rollback"
    assert [e.action for e in incident.events] == ["investigate", "rollback"]


def test_a_class_mix_change_raising_targeted_and_drift_alerts_does_not_roll_back_on_its_own() -> None:
    # both alerts are read off the same class histogram: a benign daily cycle raises them together
    incident = Incident("inc-1", "digits", "3", opened_at=100.0)
    incident.add_signal(_signal("a1", kind="targeted_misclassification", hint="high"), {}, 0.85)
    incident.add_signal(_signal("a2", kind="class_distribution_drift", hint="medium"), {}, 0.85)
    assert incident.severity is Severity.CRITICAL and incident.action == "investigate"
    assert incident.confidence == 0.75
    incident.add_signal(_signal("a3", kind="trigger_pattern_match", hint="high"), {}, 0.85)  # independent evidence
    assert incident.action == "rollback"


def test_the_same_alert_delivered_twice_is_correlated_once_and_pages_once() -> None:
    incident = Incident("inc-1", "digits", "3", opened_at=100.0)
    assert incident.add_signal(_signal("a1"), {}, 0.85)
    assert not incident.add_signal(_signal("a1"), {}, 0.85)
    assert len(incident.signals) == 1 and len(incident.events) == 1


def test_natural_drift_in_production_never_calls_for_a_rollback() -> None:
    incident = Incident("inc-1", "digits", "3", opened_at=100.0)
    for i, kind in enumerate(["class_distribution_drift", "confidence_drop", "class_distribution_drift"]):
        incident.add_signal(_signal(f"d{i}", kind=kind, hint="medium"), {}, 0.5)
    assert incident.severity is Severity.MEDIUM and incident.action == "investigate"


def test_a_responder_confirmation_in_production_escalates_to_rollback() -> None:
    incident = Incident("inc-1", "digits", "3", opened_at=100.0)
    incident.add_signal(_signal(kind="class_distribution_drift", hint="low"), {}, 0.85)
    incident.confirm(200.0, "alice", in_production=True)
    assert (incident.status, incident.severity, incident.action) == (IncidentStatus.CONFIRMED, Severity.CRITICAL,
                                                                    "rollback")
    assert incident.events[-1].action == "rollback"


def test_a_closed_incident_refuses_further_responder_actions() -> None:
    incident = Incident("inc-1", "digits", "3", opened_at=100.0)
    incident.mark_false_positive(150.0, "bob", "benign traffic spike")
    with pytest.raises(IncidentError, match="false_positive"):
        incident.acknowledge(160.0, "bob")
    assert [t["what"] for t in incident.timeline] == ["false_positive"]
