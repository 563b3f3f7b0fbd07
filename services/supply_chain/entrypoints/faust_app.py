"""faust agent of the supply-chain service: published model versions → verdicts and scan requests."""

from __future__ import annotations

import faust

from services.supply_chain.bootstrap import bootstrap
from services.supply_chain.config import SupplyChainSettings
from shared import topics
from shared.messaging.faust_app import FaustPublisher, create_faust_app, register_agent


def create_app(settings: SupplyChainSettings) -> faust.App:
    app = create_faust_app("bdguard-supply-chain", settings)
    service = bootstrap(settings, FaustPublisher(app))
    register_agent(app, topic=topics.MODEL_VERSION_PUBLISHED, name="validate_model_version",
                   handle=service.on_published, publisher=service.relay.publisher)
    return app
