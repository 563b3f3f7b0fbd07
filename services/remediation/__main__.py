"""python -m services.remediation → the remediation worker."""

from services.remediation.config import RemediationSettings
from services.remediation.entrypoints.faust_app import create_app
from shared.messaging.worker import run_worker

if __name__ == "__main__":
    run_worker(create_app, RemediationSettings())
