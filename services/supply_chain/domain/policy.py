"""Policy values the checks apply; built from settings by ``config.SupplyChainSettings.policy()``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import Severity

DEFAULT_TRUSTED_SOURCES: tuple[str, ...] = (
    # real Hugging Face model URLs are huggingface.co/<org>/<name>; the card's "huggingface.co/models"
    # would reject every one of them, so the whole host is trusted (its lookalikes are still caught)
    "huggingface.co",
    "tfhub.dev",
    "pytorch.org/hub",
    "ngc.nvidia.com",
    "models.ngc.nvidia.com",
)

# Globals a PyTorch state_dict / NumPy array pickle needs; nothing that reaches code execution.
DEFAULT_PICKLE_GLOBALS: tuple[str, ...] = (
    "collections.OrderedDict",
    "builtins.set",
    "builtins.frozenset",
    "__builtin__.set",
    "__builtin__.frozenset",
    "_codecs.encode",
    "torch.Size",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.FloatStorage",
    "torch.DoubleStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch.float32",
    "torch.float16",
    "torch.bfloat16",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
    "numpy.ndarray",
    "numpy.dtype",
)

# ONNX standard domains plus ONNX Runtime's built-in contrib ops (compiled in, not a loaded library).
DEFAULT_ONNX_DOMAINS: tuple[str, ...] = (
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.preview.training",
    "com.microsoft",
)


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 10_000
    max_ratio: float = 200.0
    max_total_uncompressed: int = 32 * 2**30
    max_nesting: int = 0


@dataclass(frozen=True)
class SupplyChainPolicy:
    """Everything the checks decide by; every field has a safe default."""

    trusted_sources: tuple[str, ...] = DEFAULT_TRUSTED_SOURCES
    internal_registries: tuple[str, ...] = ()
    unsigned_allowed_sources: tuple[str, ...] = ()
    require_signature: bool = True
    require_declared_digest: bool = True
    max_file_bytes: int = 8 * 2**30
    max_total_bytes: int = 32 * 2**30
    max_files: int = 10_000
    max_onnx_bytes: int = 2**31 - 1
    max_pickle_bytes: int = 2 * 2**30
    allow_pickle: bool = False
    pickle_globals: tuple[str, ...] = DEFAULT_PICKLE_GLOBALS
    onnx_domains: tuple[str, ...] = DEFAULT_ONNX_DOMAINS
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    safetensors_max_header: int = 100_000_000
    allow_unknown_formats: bool = False
    allow_text_files: bool = True
    allow_code_files: bool = False  # Python / shell sources, and configs that name remote code (auto_map)
    blocking: tuple[Severity, ...] = ("critical", "high", "medium")

    @property
    def all_trusted_sources(self) -> tuple[str, ...]:
        return self.trusted_sources + self.internal_registries
