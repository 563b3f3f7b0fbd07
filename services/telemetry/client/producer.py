"""Non-blocking telemetry producer that inference servers embed.

``record`` does the cheap vectorised work inline (argmax, confidence, entropy, block signatures:
tens of microseconds per input) and appends to a bounded buffer; it never waits on Kafka and never
raises. A background asyncio task ships columnar batches (``batch_size`` predictions or after
``linger_ms``), computes STRIP entropies and trigger matches off the event loop, reconnects with
backoff while Kafka is down, and counts everything it drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from services.telemetry.client.buffer import Chunk, ChunkBuffer
from services.telemetry.client.encoding import encode_message
from services.telemetry.client.sender import AioKafkaSender, Sender
from services.telemetry.client.settings import TelemetrySettings
from services.telemetry.domain.batch import summarise_probs
from services.telemetry.domain.signature import SignatureSpec, input_signatures
from services.telemetry.domain.triggers import TriggerLibrary

log = logging.getLogger(__name__)
StripGuard = Callable[[NDArray[np.floating]], NDArray[np.floating]]


@dataclass(frozen=True)
class Metrics:
    sent: int
    dropped: int
    buffered: int
    errors: int
    messages: int
    connected: bool

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


class TelemetryClient:
    """Buffers predictions and ships them to ``telemetry.predictions.v1``.

    Args:
        settings: buffering and Kafka settings.
        sender_factory: builds the transport (default aiokafka); tests pass a fake.
        strip_guard: ``StripGuard.entropy``-like callable, inputs [N, ...] -> entropies [N].
        trigger_library: reversed triggers to match inputs against.
    """

    def __init__(self, settings: TelemetrySettings | None = None, *,
                 sender_factory: Callable[[TelemetrySettings], Sender] | None = None,
                 strip_guard: StripGuard | None = None,
                 trigger_library: TriggerLibrary | None = None) -> None:
        self.settings = settings or TelemetrySettings()
        self._sender_factory = sender_factory or (lambda s: AioKafkaSender(s.bootstrap_servers))
        self.strip_guard = strip_guard
        self.trigger_library = trigger_library
        self._spec = SignatureSpec(grid=self.settings.signature_grid)
        self._buffer = ChunkBuffer(self.settings.max_buffered, self.settings.drop_policy)
        self._lock = threading.Lock()
        self._sent = self._errors = self._messages = self._pending_inputs = self._in_flight = 0
        self._sender: Sender | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False

    @property
    def metrics(self) -> Metrics:
        with self._lock:  # a batch being sent still counts as buffered until it is sent or dropped
            return Metrics(self._sent, self._buffer.dropped, self._buffer.size + self._in_flight,
                           self._errors, self._messages, self._sender is not None)

    def record(self, model: str, version: str, inputs_batch: NDArray[np.floating] | Sequence[object] | None,
               probs_batch: NDArray[np.floating] | Sequence[object],
               ids: Sequence[str] | None = None) -> list[str]:
        """Queue one batch of predictions; returns their ids (generated when ``ids`` is None).

        Args:
            inputs_batch: model inputs [N, D] or [N, C, H, W]; None sends empty signatures.
            probs_batch: class probabilities [N, K].
            ids: prediction ids [N].
        """
        try:
            probs = np.asarray(probs_batch, dtype=np.float64)
            n = probs.shape[0]
            out_ids = [uuid.uuid4().hex for _ in range(n)] if ids is None else [str(i) for i in ids]
            if len(out_ids) != n:
                raise ValueError(f"{len(out_ids)} ids for {n} predictions")
            pred, conf, entropy = summarise_probs(probs)
            inputs = None if inputs_batch is None else np.asarray(inputs_batch)
            sigs = [""] * n if inputs is None else input_signatures(inputs, self._spec)
            keep = inputs is not None and self._keep_inputs(n)
            chunk = Chunk((model, version, int(probs.shape[1])), out_ids, np.full(n, time.time()), pred, conf,
                          entropy, sigs, inputs if keep else None)
            self._buffer.put(chunk)
            self._poke()
            return out_ids
        except Exception:  # telemetry must never fail a prediction
            log.exception("telemetry record failed")
            with self._lock:
                self._errors += 1
            return [str(i) for i in ids] if ids is not None else []

    def _keep_inputs(self, n: int) -> bool:
        if self.strip_guard is None and self.trigger_library is None:
            return False
        with self._lock:
            if self._pending_inputs + n > self.settings.max_pending_inputs:
                return False
            self._pending_inputs += n
            return True

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or self._buffer.size < self.settings.batch_size:
            return
        with contextlib.suppress(RuntimeError):  # loop closed
            loop.call_soon_threadsafe(wake.set)

    async def start(self) -> None:
        """Start the background flusher on the running loop; returns at once even if Kafka is down."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="bdguard-telemetry-flusher")

    async def stop(self) -> None:
        """Flush what can be sent within ``stop_timeout_s``, then stop; never raises."""
        if self._task is None:
            return
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.settings.stop_timeout_s)
        except (TimeoutError, Exception):
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._task = None
        await self._close_sender()

    async def _run(self) -> None:
        backoff = self.settings.reconnect_backoff_s
        while True:
            if not self._stopping:
                await self._wait_for_batch()
            if self._sender is None and not await self._connect():
                if self._stopping:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.reconnect_backoff_max_s)
                continue
            backoff = self.settings.reconnect_backoff_s
            await self._drain()
            if self._stopping and self._buffer.size == 0:
                return

    async def _wait_for_batch(self) -> None:
        assert self._wake is not None
        if self._buffer.size >= self.settings.batch_size:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.linger_ms / 1000.0)

    async def _connect(self) -> bool:
        sender = self._sender_factory(self.settings)
        try:
            await asyncio.wait_for(sender.start(), self.settings.send_timeout_s)
        except Exception as exc:
            log.warning("telemetry: Kafka unavailable (%s); buffering", exc)
            with self._lock:
                self._errors += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender.stop(), 1.0)
            return False
        self._sender = sender
        return True

    async def _drain(self) -> None:
        while self._sender is not None:
            with self._lock:
                chunks = self._buffer.take(self.settings.batch_size)
                n = self._in_flight = sum(len(c) for c in chunks)
            if not chunks:
                return
            try:
                strip, marks = await self._run_guards(chunks)
                key, value, headers = encode_message(chunks, server_id=self.settings.server_id,
                                                     source=self.settings.source, strip=strip, marks=marks)
                await asyncio.wait_for(self._sender.send(self.settings.topic, key, value, headers),
                                       self.settings.send_timeout_s)
            except Exception as exc:
                log.warning("telemetry: send failed (%s); %d predictions dropped", exc, n)
                with self._lock:
                    self._errors += 1
                    self._in_flight = 0
                    self._buffer.count_dropped(n)
                await self._close_sender()
                return
            with self._lock:
                self._sent += n
                self._messages += 1
                self._in_flight = 0

    async def _run_guards(
        self, chunks: list[Chunk]
    ) -> tuple[NDArray[np.float64] | None, list[str] | None]:
        try:
            return await asyncio.to_thread(self._guards, chunks)
        except Exception:  # a failing guard costs its columns, never the predictions
            log.exception("telemetry: STRIP guard / trigger matching failed")
            with self._lock:
                self._errors += 1
            return None, None

    def _guards(self, chunks: list[Chunk]) -> tuple[NDArray[np.float64] | None, list[str] | None]:
        """STRIP entropies (NaN where inputs were not kept) and trigger marks, off the event loop."""
        kept = [c for c in chunks if c.inputs is not None]
        with self._lock:
            self._pending_inputs -= sum(len(c) for c in kept)
        if not kept:
            return None, None
        strip = np.full(sum(len(c) for c in chunks), np.nan) if self.strip_guard else None
        marks: list[str] | None = [] if self.trigger_library else None
        offset = 0
        for c in chunks:
            if c.inputs is not None and strip is not None and self.strip_guard is not None:
                strip[offset:offset + len(c)] = np.asarray(self.strip_guard(c.inputs), dtype=np.float64)
            if marks is not None and self.trigger_library is not None:
                marks += self.trigger_library.match(c.inputs) if c.inputs is not None else [""] * len(c)
            offset += len(c)
        return strip, marks

    async def _close_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender.stop(), 2.0)
