"""faust agent of the remediation service: remediation requests → a candidate version and the outcome."""

from __future__ import annotations

import faust

from services.remediation.bootstrap import bootstrap
from services.remediation.config import RemediationSettings
from shared import topics
from shared.messaging.faust_app import FaustPublisher, create_faust_app, register_agent


def create_app(settings: RemediationSettings) -> faust.App:
    # two scan → remediate rounds take minutes on a CNN: allow long gaps between polls without a rebalance
    app = create_faust_app("bdguard-remediation", settings, broker_max_poll_interval=1800.0)
    service = bootstrap(settings, FaustPublisher(app))
    register_agent(app, topic=topics.REMEDIATION_REQUESTED, name="remediate_model",
                   handle=service.on_remediation_requested, publisher=service.relay.publisher)
    return app
