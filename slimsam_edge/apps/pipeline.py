"""A threaded frame pipeline for camera and video apps: capture -> encode -> process -> sink.

Each stage runs on its own thread, joined by bounded queues, so the image encoder works on frame
*n + 1* while the decoder (or tracker) works on frame *n* and the sink writes frame *n - 1*
(:class:`~slimsam_edge.predictor.EdgePredictor` allows one encode thread and one decode thread).
With ``encoders=N`` the encode stage is N threads (an EdgePredictor tuned with ``encode_requests=N``
takes N concurrent encodes): each takes the next frame as soon as it is free, so the encoding of
frame *n + 1* starts while frame *n* is still being encoded; encoded frames are handed on strictly
in the order they were taken, so process and sink still see frames in capture order.

Two modes:

* every-frame (default): every frame read is encoded, processed and given to the sink, in order;
  a slow stage slows capture down (the queues are bounded, memory stays flat).
* real-time (``realtime=True``): capture never waits; the encoder always takes the newest frame
  read, older ones that were not started are dropped and counted (:attr:`PipelineStats.dropped`).
  The first frame is never dropped (it carries an app's first prompts; capture waits for the
  encoder to take it), nor, at the end of the input, the last one. Frames reach the sink in
  capture order.

The pipeline ends at the end of the input, on ``stop()``, on Ctrl-C in the thread calling
:meth:`Pipeline.run` (KeyboardInterrupt re-raised after the threads are joined) or when a stage
raises (the first exception is re-raised in :meth:`Pipeline.run`'s caller). No thread outlives
:meth:`Pipeline.run`. Frames still queued when it stops early are discarded, never half-delivered.

Example:
    >>> frames = ((i, np.full((2, 2, 3), i, np.uint8)) for i in range(5))
    >>> got = []
    >>> stats = Pipeline(frames, encode=lambda frame: int(frame.sum()),
    ...                  process=lambda index, frame, enc: enc * 10,
    ...                  sink=lambda index, frame, result: got.append((index, result))).run()
    >>> got
    [(0, 0), (1, 120), (2, 240), (3, 360), (4, 480)]
    >>> stats.frames_read, stats.frames_done, stats.dropped
    (5, 5, 0)
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import UsageError

#: latencies kept for the percentiles (the most recent ones; memory stays bounded on long streams)
LATENCY_WINDOW = 10_000
#: how often (s) a blocked stage wakes to check whether the pipeline is stopping
_POLL = 0.05
_END = object()  # end-of-input marker passed down the queues


@dataclass
class PipelineStats:
    """What a pipeline run did.

    Attributes:
        frames_read: frames taken from the source.
        frames_done: frames the sink received.
        dropped: frames skipped in real-time mode (read, never encoded).
        seconds: wall time of the run.
        latencies_ms: capture-to-sink latency of the most recent frames (at most
            :data:`LATENCY_WINDOW`), from the frame being read to the sink returning.
        max_latency_ms: the highest latency of all frames.

    Example:
        >>> s = PipelineStats(frames_read=4, frames_done=4, seconds=2.0)
        >>> s.latencies_ms.extend([10.0, 20.0, 30.0, 40.0]); s.max_latency_ms = 40.0
        >>> s.to_dict()["latency_ms"], s.fps
        ({'p50': 25.0, 'p95': 38.5, 'max': 40.0}, 2.0)
    """

    frames_read: int = 0
    frames_done: int = 0
    dropped: int = 0
    seconds: float = 0.0
    latencies_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    max_latency_ms: float = 0.0

    @property
    def fps(self) -> float:
        """Frames delivered per second of wall time."""
        return self.frames_done / self.seconds if self.seconds > 0 else 0.0

    def latency(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of the latencies kept, in ms (0 when none)."""
        return float(np.percentile(np.fromiter(self.latencies_ms, float), q)) if self.latencies_ms else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: counts, fps, seconds and latency p50/p95/max (ms)."""
        return {
            "frames_read": self.frames_read, "frames_done": self.frames_done, "dropped": self.dropped,
            "fps": round(self.fps, 3), "seconds": round(self.seconds, 3),
            "latency_ms": {"p50": round(self.latency(50), 3), "p95": round(self.latency(95), 3),
                           "max": round(self.max_latency_ms, 3)},
        }


class _Newest:
    """A one-slot mailbox: ``put`` replaces a frame not taken yet (counted as dropped), ``get`` takes
    the newest; after ``put(_END)`` the last frame is still taken before the end is seen."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._ended = False
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if item is _END:
                self._ended = True
            else:
                self.dropped += self._full
                self._item, self._full = item, True
            self._cond.notify()

    def taken(self) -> bool:
        """Whether the slot is empty (its last frame was taken)."""
        with self._cond:
            return not self._full

    def get(self, timeout: float) -> Any:
        with self._cond:
            if not (self._full or self._ended):
                self._cond.wait(timeout)
            if self._full:
                item, self._item, self._full = self._item, None, False
                return item
            if self._ended:
                return _END
            raise queue.Empty


class Pipeline:
    """Run ``frames`` through ``encode``, ``process`` and ``sink``, each stage on its own thread.

    Arguments:
        frames: iterable of ``(index, frame)`` (a :class:`~slimsam_edge.apps.video_io.FrameSource`,
            or any iterable); iterated on the capture thread.
        encode: ``encode(frame) -> encoded`` (e.g. ``predictor.encode``), on the encode thread.
        process: ``process(index, frame, encoded) -> result`` (e.g. a tracker update), on the
            process thread, called in frame order.
        sink: ``sink(index, frame, result)`` (e.g. write an overlay video), on the sink thread, in
            frame order.
        realtime: encode the newest frame and drop older ones (counted) instead of every frame.
        queue_size: capacity of the encode -> process and process -> sink queues (and of the
            capture -> encode queue in every-frame mode), >= 1.
        encoders: encode threads, >= 1; ``encode`` must then take that many concurrent calls.

    Illustration (not run as a doctest: it needs a camera and a model)::

        predictor = EdgePredictor.from_bundle("bundle/")
        tracker = Tracker(predictor)
        with open_source("0") as camera, VideoWriter("out.mp4", fps=30) as video:
            pipe = Pipeline(camera, predictor.encode, lambda i, f, emb: tracker.update(f, embedding=emb),
                            lambda i, f, res: video.write(overlay(f, res)), realtime=True)
            stats = pipe.run()
    """

    STAGES = ("capture", "encode", "process", "sink")

    def __init__(self, frames: Iterable[tuple[int, np.ndarray]], encode: Callable[[np.ndarray], Any],
                 process: Callable[[int, np.ndarray, Any], Any], sink: Callable[[int, np.ndarray, Any], Any],
                 *, realtime: bool = False, queue_size: int = 2, encoders: int = 1):
        if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1:
            raise UsageError(f"queue_size must be a whole number >= 1, got {queue_size!r}")
        if not isinstance(encoders, int) or isinstance(encoders, bool) or encoders < 1:
            raise UsageError(f"encoders must be a whole number >= 1, got {encoders!r}")
        self.encoders = encoders
        self.frames = frames
        self.encode = encode
        self.process = process
        self.sink = sink
        self.realtime = bool(realtime)
        self.queue_size = queue_size
        self.stats = PipelineStats()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()

    def stop(self) -> None:
        """Ask every stage to stop (from any thread, e.g. a sink that has seen enough); :meth:`run`
        returns once they have."""
        self._stop.set()

    # ------------------------------------------------------------------ run
    def run(self, progress: Callable[[int, float, int], None] | None = None) -> PipelineStats:
        """Run to the end of the input (or stop, Ctrl-C, a stage's exception); return the stats.

        Arguments:
            progress: optional ``callback(frames_done, fps, dropped)``, called on the sink thread
                after each frame.

        Raises:
            whatever a stage raised first (after every thread has ended), or KeyboardInterrupt.
        """
        if self._stop.is_set() or self.stats.frames_read:
            raise UsageError("a Pipeline runs once; make a new one")
        self._progress = progress
        self._captured: Any = _Newest() if self.realtime else queue.Queue(self.queue_size)
        self._encoded: queue.Queue = queue.Queue(self.queue_size)
        self._processed: queue.Queue = queue.Queue(self.queue_size)
        self._t0 = time.perf_counter()
        # the encode threads take frames one at a time (a frame and its turn number together) and
        # hand them on in turn order
        self._take = threading.Lock()
        self._taken = 0  # frames taken by the encode threads so far: the next turn number
        self._input_done = False  # an encode thread has seen the end of the input
        self._turn = threading.Condition()
        self._next_turn = 0  # the turn whose frame goes into the encoded queue next
        self._encoders_left = self.encoders
        stages = [("capture", self._capture)]
        stages += [(f"encode{k if self.encoders > 1 else ''}", self._encode) for k in range(self.encoders)]
        stages += [("process", self._process), ("sink", self._sink)]
        threads = [threading.Thread(target=self._guard, args=(fn,), name=f"slimsam-{name}", daemon=True)
                   for name, fn in stages]
        self._running = len(threads)
        self._finished = threading.Event()  # set by the last stage thread to end
        try:
            for t in threads:
                t.start()
            # wait on an Event, not Thread.join: a KeyboardInterrupt landing inside join's lock
            # handling can leave a thread marked stopped while it runs (CPython bpo-45274)
            while not self._finished.wait(_POLL):
                pass
        except BaseException:
            self._stop.set()
            # every started stage sees the stop within _POLL (a stage inside a long call ends it first)
            while not self._finished.wait(_POLL) and any(t.is_alive() for t in threads):
                pass
            raise
        finally:
            for t in threads:
                if t.ident is not None:
                    t.join()  # its stage has ended: only the thread's own exit is left
            self.stats.seconds = time.perf_counter() - self._t0
            if self.realtime:
                self.stats.dropped = self._captured.dropped
        if self._error is not None:
            raise self._error
        return self.stats

    # ------------------------------------------------------------------ stages
    def _guard(self, stage: Callable[[], None]) -> None:
        try:
            stage()
        except BaseException as err:  # noqa: BLE001 - re-raised in run()
            with self._error_lock:
                if self._error is None:
                    self._error = err
            self._stop.set()
        finally:
            with self._error_lock:
                self._running -= 1
                if self._running == 0:
                    self._finished.set()

    def _put(self, q: Any, item: Any) -> bool:
        """Put ``item`` into ``q``, waiting while it is full; False when the pipeline stops first."""
        if isinstance(q, _Newest):
            q.put(item)
            return True
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: Any) -> Any:
        """The next item of ``q``; ``_END`` when the pipeline stops first."""
        while not self._stop.is_set():
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue
        return _END

    def _capture(self) -> None:
        iterator = iter(self.frames)
        while not self._stop.is_set():
            try:
                index, frame = next(iterator)
            except StopIteration:
                break
            self.stats.frames_read += 1
            if not self._put(self._captured, (index, frame, time.perf_counter())):
                return
            if self.realtime and self.stats.frames_read == 1:  # the first frame is never dropped
                while not (self._captured.taken() or self._stop.wait(_POLL / 10)):
                    pass
        self._put(self._captured, _END)

    def _next_frame(self) -> tuple[int, Any]:
        """``(turn, item)``: the next captured frame and its turn number, ``(-1, _END)`` at the end."""
        with self._take:
            if self._input_done:
                return -1, _END
            item = self._get(self._captured)
            if item is _END:
                self._input_done = True
                return -1, _END
            self._taken += 1
            return self._taken - 1, item

    def _hand_on(self, turn: int, item: Any) -> bool:
        """Put ``item`` into the encoded queue once every earlier turn has; False when stopping."""
        with self._turn:
            while self._next_turn != turn:
                if self._stop.is_set():
                    return False
                self._turn.wait(_POLL)
        ok = self._put(self._encoded, item)
        with self._turn:
            self._next_turn += 1
            self._turn.notify_all()
        return ok

    def _encode(self) -> None:
        while True:
            turn, item = self._next_frame()
            if item is _END:
                break
            index, frame, t_read = item
            if not self._hand_on(turn, (index, frame, t_read, self.encode(frame))):
                return
        with self._turn:
            self._encoders_left -= 1
            last = self._encoders_left == 0
        if last:  # every other encode thread has handed on all it took
            self._put(self._encoded, _END)

    def _process(self) -> None:
        while (item := self._get(self._encoded)) is not _END:
            index, frame, t_read, encoded = item
            if not self._put(self._processed, (index, frame, t_read, self.process(index, frame, encoded))):
                return
        self._put(self._processed, _END)

    def _sink(self) -> None:
        stats = self.stats
        while (item := self._get(self._processed)) is not _END:
            index, frame, t_read, result = item
            self.sink(index, frame, result)
            now = time.perf_counter()
            latency = (now - t_read) * 1e3
            stats.latencies_ms.append(latency)
            stats.max_latency_ms = max(stats.max_latency_ms, latency)
            stats.frames_done += 1
            if self._progress is not None:
                fps = stats.frames_done / max(now - self._t0, 1e-9)
                dropped = self._captured.dropped if self.realtime else 0
                self._progress(stats.frames_done, fps, dropped)
