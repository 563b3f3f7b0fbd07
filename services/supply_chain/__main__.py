"""python -m services.supply_chain → the supply-chain validation worker."""

from services.supply_chain.config import SupplyChainSettings
from services.supply_chain.entrypoints.faust_app import create_app
from shared.messaging.worker import run_worker

if __name__ == "__main__":
    run_worker(create_app, SupplyChainSettings())
