"""Use cases of the supply-chain service."""
