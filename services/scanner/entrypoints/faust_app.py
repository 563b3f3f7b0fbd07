"""faust agent of the scanner service: scan requests → scanned-clean or quarantined."""

from __future__ import annotations

import faust

from services.scanner.bootstrap import bootstrap
from services.scanner.config import ScannerSettings
from shared import topics
from shared.messaging.faust_app import FaustPublisher, create_faust_app, register_agent


def create_app(settings: ScannerSettings) -> faust.App:
    # a scan takes tens of seconds: allow long gaps between polls without a rebalance
    app = create_faust_app("bdguard-scanner", settings, broker_max_poll_interval=900.0)
    service = bootstrap(settings, FaustPublisher(app))
    register_agent(app, topic=topics.SCAN_REQUESTED, name="scan_model", handle=service.on_scan_requested,
                   publisher=service.relay.publisher)
    return app
