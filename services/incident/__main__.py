"""python -m services.incident → the incident response worker."""

from services.incident.config import IncidentSettings
from services.incident.entrypoints.faust_app import create_app
from shared.messaging.worker import run_worker

if __name__ == "__main__":
    run_worker(create_app, IncidentSettings())
