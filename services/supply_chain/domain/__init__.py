"""Pure supply-chain model: stdlib and numpy only, no I/O libraries."""

from .model import CheckResult, ModelVersionPublished, Severity, SupplyChainVerdict, decide_verdict
from .policy import ArchiveLimits, SupplyChainPolicy

__all__ = [
    "ArchiveLimits",
    "CheckResult",
    "ModelVersionPublished",
    "Severity",
    "SupplyChainPolicy",
    "SupplyChainVerdict",
    "decide_verdict",
]
