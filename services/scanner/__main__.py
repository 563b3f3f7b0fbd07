"""python -m services.scanner → the backdoor scanning worker."""

from services.scanner.config import ScannerSettings
from services.scanner.entrypoints.faust_app import create_app
from shared.messaging.worker import run_worker

if __name__ == "__main__":
    run_worker(create_app, ScannerSettings())
