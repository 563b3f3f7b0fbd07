"""python -m services.telemetry → the telemetry analysis worker."""

from services.telemetry.config import TelemetrySettings
from services.telemetry.entrypoints.faust_app import create_app
from shared.messaging.worker import run_worker

if __name__ == "__main__":
    run_worker(create_app, TelemetrySettings())
