"""faust agents of the incident service: alerts in, escalations out; rollbacks and remediations onto the timeline;
responders paged from the published escalations."""

from __future__ import annotations

import faust

from services.incident.bootstrap import bootstrap
from services.incident.config import IncidentSettings
from shared import topics
from shared.messaging.faust_app import FaustPublisher, create_faust_app, register_agent


def create_app(settings: IncidentSettings) -> faust.App:
    app = create_faust_app("bdguard-incident", settings)
    service = bootstrap(settings, FaustPublisher(app))
    register_agent(app, topic=topics.ALERTS, name="correlate_alerts", handle=service.on_alert,
                   publisher=service.relay.publisher)
    register_agent(app, topic=topics.ROLLBACK_COMPLETED, name="record_rollbacks",
                   handle=service.on_rollback_completed, publisher=service.relay.publisher)
    register_agent(app, topic=topics.REMEDIATION_COMPLETED, name="record_remediations",
                   handle=service.on_remediation_completed, publisher=service.relay.publisher)
    register_agent(app, topic=topics.INCIDENT_ESCALATED, name="page_responders", handle=service.on_escalated,
                   publisher=service.relay.publisher)
    return app
