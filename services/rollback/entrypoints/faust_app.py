"""faust agent of the rollback service: escalations that call for a rollback → a clean version serves."""

from __future__ import annotations

import faust

from services.rollback.bootstrap import bootstrap
from services.rollback.config import RollbackSettings
from shared import topics
from shared.messaging.faust_app import FaustPublisher, create_faust_app, register_agent


def create_app(settings: RollbackSettings) -> faust.App:
    app = create_faust_app("bdguard-rollback", settings)
    service = bootstrap(settings, FaustPublisher(app))
    register_agent(app, topic=topics.INCIDENT_ESCALATED, name="roll_back_model", handle=service.on_escalation,
                   publisher=service.relay.publisher)
    return app
