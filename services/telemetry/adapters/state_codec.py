"""faust codecs: objects in memory, compact JSON (orjson) in the changelog topics."""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs

from services.telemetry.domain.baseline import Baseline
from services.telemetry.service_layer.monitor import MonitorState


class DictCodec(codecs.Codec):
    """Serialise any object with ``to_dict``/``from_dict``."""

    def __init__(self, cls: Any) -> None:
        super().__init__()
        self.cls = cls

    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)

    def _loads(self, s: bytes) -> Any:
        return self.cls.from_dict(orjson.loads(s))


def register_codecs() -> tuple[str, str]:
    """Register (idempotently) and return the codec names for monitor states and baselines."""
    codecs.register("bdguard_monitor_state", DictCodec(MonitorState))
    codecs.register("bdguard_baseline", DictCodec(Baseline))
    return "bdguard_monitor_state", "bdguard_baseline"
