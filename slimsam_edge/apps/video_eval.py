"""Evaluate tracking on a video with exact masks: DAVIS-style J and F per object, losses, fps.

The protocol (semi-supervised, one click): each object is prompted once, on the first frame where
at least :data:`MIN_VISIBLE` of its pixels are visible, with one positive click at the peak of its
ground-truth mask's distance transform; from then on the :class:`~slimsam_edge.apps.tracker.Tracker`
follows it alone. When the tracker reports the object lost while it is visible in the ground truth,
an oracle re-acquires it with its ground-truth box (counted in ``reacquisitions``). Every later
frame is scored, the prompt frame excepted (as DAVIS skips the annotated frame), frames where the
object is absent included (an empty prediction there scores 1, a leftover mask 0).

Example (the stand-in segmenter of :func:`~slimsam_edge.apps.tracker.demo_predictor`):
    >>> from slimsam_edge.apps.tracker import demo_predictor
    >>> from slimsam_edge.data.synth_video import VideoFrame
    >>> def frame(i, x):  # object 1: a 20x20 square at column x (red > 127 for the stand-in)
    ...     img = np.zeros((96, 128, 3), np.uint8); img[30:50, x:x + 20] = 255
    ...     return VideoFrame(i, img, (img[..., 0] > 0).astype(np.uint8))
    >>> class Clip(list):
    ...     object_ids = [1]
    >>> r = evaluate_video(demo_predictor(), Clip(frame(i, 10 + 4 * i) for i in range(6)))
    >>> r["J"], r["F"], r["frames"], r["losses"], r["objects"][1]["frames"]
    (1.0, 1.0, 6, 0, 5)
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np

from ..eval.video_metrics import VideoScores
from .tracker import LOST, Prompt, Tracker, TrackGate, interior_point, mask_bbox

#: an object is clicked, or re-acquired by the oracle, once this many of its pixels are visible
MIN_VISIBLE = 64


def evaluate_video(predictor: Any, video: Iterable[Any], *, progress: Callable[[int, int | None], None] | None = None,
                   gate: TrackGate | None = None, **tracker_options: Any) -> dict[str, Any]:
    """Track every object of ``video`` (an iterable of
    :class:`~slimsam_edge.data.synth_video.VideoFrame` with ``object_ids``) from one click, and
    score it against the ground truth.

    Arguments:
        predictor: an :class:`~slimsam_edge.predictor.EdgePredictor` (batched-prompt decoder).
        video: a :class:`~slimsam_edge.data.synth_video.ProceduralVideo`, a
            :class:`~slimsam_edge.data.synth_video.VideoDataset`, or any iterable of frames with
            an ``object_ids`` attribute.
        progress: ``progress(done, total)`` after each frame (``total`` ``None`` when unknown).
        gate, tracker_options: passed to :class:`~slimsam_edge.apps.tracker.Tracker`.

    Returns:
        the :class:`~slimsam_edge.eval.video_metrics.VideoScores` summary (``objects`` by id with
        J, F, JF, frames; overall J, F, JF) + ``losses`` (times an object became lost),
        ``reacquisitions`` (oracle boxes given), ``frames``, ``seconds`` (time in the tracker:
        encoder, decoder and gating; not reading the video) and ``fps`` (frames / seconds).
    """
    ids = [int(k) for k in video.object_ids]  # type: ignore[attr-defined]
    total = len(video) if hasattr(video, "__len__") else None  # type: ignore[arg-type]
    current: dict[str, Any] = {}
    counts = {"losses": 0, "reacquisitions": 0}

    def oracle(_frame: Any, lost_ids: list) -> dict[int, Prompt]:
        out = {}
        for k in lost_ids:
            gt = current["frame"].mask(k)
            if np.count_nonzero(gt) >= MIN_VISIBLE:
                x, y, w, h = mask_bbox(gt)  # type: ignore[misc]
                out[k] = Prompt(box=[x, y, x + w, y + h])
        counts["reacquisitions"] += len(out)
        return out

    tracker = Tracker(predictor, gate=gate, reacquire=oracle, **tracker_options)
    scores = VideoScores()
    started: set[int] = set()
    seconds, done = 0.0, 0
    for frame in video:
        current["frame"] = frame
        t0 = time.perf_counter()
        before = {k: tracker.state(k) for k in tracker.objects}
        results = tracker.update(frame.image) if tracker.objects else {}
        new = [k for k in ids if k not in started and np.count_nonzero(frame.mask(k)) >= MIN_VISIBLE]
        for k in new:
            tracker.add_object(frame.image, points=[interior_point(frame.mask(k))], obj_id=k)
            started.add(k)
        seconds += time.perf_counter() - t0
        for k, r in results.items():
            scores.add(frame.index, k, r.mask, frame.mask(k))
            if r.state == LOST and before.get(k) != LOST:
                counts["losses"] += 1
        done += 1
        if progress is not None:
            progress(done, total)
    summary = scores.summary()
    summary.update(counts)
    summary.update(frames=done, seconds=seconds, fps=done / seconds if seconds > 0 else 0.0,
                   backend=getattr(predictor, "backend", None), precision=getattr(predictor, "precision", None))
    return summary
