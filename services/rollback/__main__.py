"""python -m services.rollback → the rollback worker."""

from services.rollback.config import RollbackSettings
from services.rollback.entrypoints.faust_app import create_app
from shared.messaging.worker import run_worker

if __name__ == "__main__":
    run_worker(create_app, RollbackSettings())
