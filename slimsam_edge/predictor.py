"""EdgePredictor: segment-anything's ``SamPredictor`` API on an exported bundle, without torch.

Pre- and post-processing are numpy/cv2; the encoder and the low-resolution decoder run through any
registered :class:`~slimsam_edge.runtimes.Runner`. Only the returned masks are resized to the
original image, outside the decoder graph.

Illustration (not run as a doctest: it needs files or a model)::

    p = EdgePredictor.from_bundle("bundle/", backend="openvino")
    p.set_image(image_rgb)
    masks, scores, low_res = p.predict(point_coords=np.array([[500, 375]]),
                                       point_labels=np.array([1]))
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConcurrentUseError, ImageError, PromptError, UsageError
from .limits import MAX_MASK_LOGIT, MAX_POINTS_PER_PROMPT, MAX_PROMPTS, check_image_size, check_threads
from .models.graph_spec import DECODER_LOWRES as DECODER
from .models.graph_spec import ENCODER
from .runtimes import Runner, RunnerOptions, get_backend, open_runner
from .runtimes.tuning import RuntimeTuning, check_count
from .transforms import ResizeLongestSide, preprocess, upscale_masks

if TYPE_CHECKING:  # pragma: no cover
    from .bundle import Bundle

#: default prompts per decoder call of :meth:`EdgePredictor.predict_batch` (its ``prompt_chunk``)
PROMPT_CHUNK = 32


#: the decoder inputs a prompt without a mask input feeds as zeros: a runner that can specialise on
#: that (OpenVINO's ``extra["fold_zeros"]``) folds the mask branch away for such prompts
MASK_FEEDS = ("mask_input", "has_mask_input")


@dataclass(frozen=True)
class ImageEmbedding:
    """One image's encoder output and the sizes its prompts and masks are mapped with.

    Made by :meth:`EdgePredictor.encode`, used by :meth:`EdgePredictor.set_embedding`: a camera
    pipeline encodes frame *n + 1* on one thread while another decodes frame *n*.

    Attributes:
        features: 1xCxGxG image embedding.
        original_size: (h, w) of the image.
        input_size: (h, w) of the image resized into the model's square input.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]


#: what :class:`ExclusiveUse` tells a second thread on an EdgePredictor
PREDICTOR_THREADS = ("give each thread its own EdgePredictor (EdgePredictor.from_bundle per thread), or encode "
                     "on one thread and decode on one other (encode() / set_embedding(), as "
                     "slimsam_edge.apps.pipeline does)")


class ExclusiveUse:
    """A guard that refuses, instead of waiting for, a thread beyond the ``limit`` threads inside
    (default 1: a second thread; one-line ConcurrentUseError naming ``what`` and saying
    ``advice``); a thread inside may enter again.

    Example:
        >>> g = ExclusiveUse("this tracker", "use it from one thread")
        >>> with g:
        ...     with g:  # the same thread again: allowed
        ...         pass
        >>> two = ExclusiveUse("the encoder", limit=2)
        >>> with two:
        ...     t = threading.Thread(target=lambda: two.__enter__() or two.__exit__())
        ...     t.start(); t.join()  # a second thread while this one is inside: allowed up to 2
    """

    def __init__(self, what: str, advice: str = PREDICTOR_THREADS, limit: int = 1):
        self.what = what
        self.advice = advice
        self.limit = int(limit)
        self._lock = threading.Lock()
        self._inside: dict[int, int] = {}  # thread id -> depth

    def __enter__(self) -> None:
        me = threading.get_ident()
        with self._lock:
            if me not in self._inside and len(self._inside) >= self.limit:
                more = "another thread" if self.limit == 1 else f"{self.limit} other threads"
                raise ConcurrentUseError(f"{self.what} is in use by {more}; {self.advice}")
            self._inside[me] = self._inside.get(me, 0) + 1

    def __exit__(self, *exc: object) -> None:
        me = threading.get_ident()
        with self._lock:
            self._inside[me] -= 1
            if not self._inside[me]:
                del self._inside[me]


class EdgePredictor:
    """Compute an image embedding once, then predict masks for prompts (SamPredictor semantics).

    Threads: one thread may run :meth:`encode` (``encode_requests`` threads with a
    :class:`~slimsam_edge.runtimes.tuning.RuntimeTuning` asking for more) while one other runs
    :meth:`set_embedding` and the ``predict`` calls (the encoder and the decoder are separate
    sessions); any other concurrent use
    is refused with :class:`~slimsam_edge.errors.ConcurrentUseError` instead of racing on the
    current image, and so is ``predict`` on an image another thread made current (a thread that
    set its image, then predicts after a second thread set another, would get that image's masks).
    Give each further thread its own predictor: that gives exactly the serial results
    (tests/hardening/test_threads.py, ONNX Runtime and OpenVINO from 4 threads).

    Arguments:
        encoder: runner of the ``image_encoder`` graph.
        decoder: runner of the ``mask_decoder_lowres`` graph.
        image_size: the model's square input size (from the bundle manifest).
        pixel_mean, pixel_std: normalisation constants (RGB order).
        mask_threshold: logit threshold for binary masks (0.0 for SAM).
        resize: "sam" reproduces segment-anything's PIL resize; "fast" uses cv2 (INTER_AREA),
            quicker on large photos and within about one grey level of it.
        encode_requests: how many threads may run :meth:`encode` at once (the encoder runner must
            run concurrent calls or serialise them, as every :class:`~slimsam_edge.runtimes.Runner` does).
    """

    def __init__(
        self,
        encoder: Runner,
        decoder: Runner,
        *,
        image_size: int,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
        mask_threshold: float = 0.0,
        resize: str = "sam",
        encode_requests: int = 1,
    ):
        if resize not in ("sam", "fast"):
            raise UsageError(f"resize must be 'sam' (exact SAM preprocessing) or 'fast' (cv2), not {resize!r}")
        self.resize = resize
        self.encoder = encoder
        self.decoder = decoder
        self.image_size = int(image_size)
        self.pixel_mean = tuple(pixel_mean)
        self.pixel_std = tuple(pixel_std)
        self.mask_threshold = float(mask_threshold)
        self.transform = ResizeLongestSide(self.image_size)
        self.timings: dict[str, float] = {}
        #: most prompts per decoder call in :meth:`predict_batch` (bounded memory; a decoder with a
        #: lower limit, such as a TensorRT engine built for fewer, lowers it)
        self.prompt_chunk = PROMPT_CHUNK
        #: what :meth:`from_bundle` opened (``None`` for runners passed in directly)
        self.backend: str | None = None
        self.precision: str | None = None
        #: the decoder's precision (``precision`` unless ``from_bundle(decoder_precision=...)``)
        self.decoder_precision: str | None = None
        #: how the runners were tuned (:meth:`from_bundle`'s ``tuning``; the default otherwise)
        self.tuning = RuntimeTuning(encode_requests=check_count(encode_requests, "encode_requests"))
        self._encoding = ExclusiveUse("the encoder of this EdgePredictor", limit=encode_requests)
        self._decoding = ExclusiveUse("the current image and decoder of this EdgePredictor")
        self.reset_image()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bundle(
        cls,
        path: Path | str | Bundle,
        *,
        backend: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        threads: int | None = None,
        verify: bool = True,
        resize: str = "sam",
        decoder_precision: str | None = None,
        tuning: RuntimeTuning | None = None,
    ) -> "EdgePredictor":
        """Open a bundle written by ``slimsam-edge export`` (hashes verified first).

        Arguments:
            path: bundle directory, or a :class:`~slimsam_edge.bundle.Bundle` already loaded (used
                as it is: ``verify`` applies only to a directory).
            backend: "onnxruntime", "openvino", "tensorrt", "torch"; ``None`` = picked for this
                machine (:func:`auto_pick`: the detected profile's preference among the backends
                the bundle holds and that are installed).
            device: backend device ("cpu", "GPU", "AUTO", "cuda", ...); ``None`` = the detected
                profile's ``[runtime]`` device when ``backend`` is that profile's default backend
                (:func:`runtime_defaults`), else "cpu".
            precision: artifact precision to load ("fp32", "fp16", "bf16", "int8", "int8-bf16"), ``None`` = picked
                for this machine (the detected profile's default precision where the bundle has it,
                else fp32); "bf16" without a bf16 artifact loads the fp32 one with the bf16 hint,
                "int8-bf16" without an int8-bf16 artifact the int8 one with its other ops in bf16
                (OpenVINO). A precision the bundle does not hold is refused (BundleError), one this
                machine cannot run (bf16 / int8-bf16 on a CPU without BF16) too
                (UnsupportedOnThisMachineError).
            threads: intra-op threads; ``None`` = the profile's ``[runtime]`` threads in the same
                case (0 there = the runtime's own default).
            resize: "sam" (segment-anything's exact resize) or "fast" (cv2; far quicker on photos).
            decoder_precision: the decoder's precision when it differs from the encoder's (``None``
                = ``precision``), checked as ``precision`` is: "bf16" runs the fp32 decoder with the
                bf16 hint behind an fp32 or int8 encoder (OpenVINO on a BF16 / AMX CPU: about half
                the decoder's time, masks at mean IoU ~0.98 with fp32's on sam-mini, see
                docs/results/decoder.md).
            tuning: the performance hint, threads per graph and concurrent encodes
                (:class:`~slimsam_edge.runtimes.tuning.RuntimeTuning`; its thread counts override
                ``threads`` for their graph); ``None`` = the defaults. A hint on a backend without
                performance hints is refused (UsageError).

        Example (the hint is checked against the backend before any file is read):
            >>> EdgePredictor.from_bundle("no-such-bundle/", backend="onnxruntime",
            ...                           tuning=RuntimeTuning(hint="throughput"))
            Traceback (most recent call last):
            ...
            slimsam_edge.errors.UsageError: onnxruntime has no performance hint (hint 'throughput'); drop it, or use a backend that has one: openvino
        """
        from .bundle import Bundle, load_bundle

        check_threads(threads, "threads")  # before the bundle's files are hashed
        tuning = RuntimeTuning() if tuning is None else tuning
        if not isinstance(tuning, RuntimeTuning):
            raise UsageError(f"tuning must be a RuntimeTuning, not {type(tuning).__name__}")
        if tuning.hint is not None and backend is not None:
            check_hint_backend(backend, tuning.hint)
        bundle = path if isinstance(path, Bundle) else load_bundle(path, verify=verify)
        m = bundle.manifest
        backend, precision = auto_pick(bundle, backend, precision)
        if decoder_precision is not None:
            decoder_precision = auto_pick(bundle, backend, decoder_precision)[1]
        default_device, default_threads = runtime_defaults(backend)
        device = device or default_device
        threads = threads if threads is not None else default_threads
        if tuning.hint is not None:
            check_hint_backend(backend, tuning.hint)
        runners, arts = [], []
        for graph, wanted, role, extra in ((ENCODER, precision, "encoder", tuning.encoder_extra()),
                                           (DECODER, decoder_precision or precision, "decoder",
                                            {**tuning.decoder_extra(), "fold_zeros": MASK_FEEDS})):
            arts.append(find_artifact(bundle, graph, backend, wanted))
            runners.append(open_artifact(bundle.root, arts[-1], precision=wanted, device=device,
                                         threads=tuning.threads_for(role, threads), extra=extra))
        predictor = cls(
            runners[0], runners[1], image_size=m.image_size, pixel_mean=tuple(m.pixel_mean),
            pixel_std=tuple(m.pixel_std), mask_threshold=m.mask_threshold, resize=resize,
            encode_requests=tuning.encode_requests,
        )
        predictor.tuning = tuning
        predictor.backend, predictor.precision = runners[0].backend, precision or arts[0].precision
        predictor.decoder_precision = decoder_precision or predictor.precision
        return predictor

    @classmethod
    def from_model(cls, sam: Any, *, threads: int | None = None, precision: str = "fp32") -> "EdgePredictor":
        """Wrap an in-memory PyTorch ``Sam`` (with a ``.spec``) in the same predictor API.

        Used to evaluate a checkpoint exactly as a bundle is evaluated (torch backend).
        """
        spec = sam.spec
        runners = [
            open_runner(sam, backend="torch", options=RunnerOptions(
                threads=threads, precision=precision, extra={"graph": graph}))
            for graph in (ENCODER, DECODER)
        ]
        return cls(runners[0], runners[1], image_size=spec.image_size, pixel_mean=spec.pixel_mean,
                   pixel_std=spec.pixel_std)

    @classmethod
    def from_checkpoint(cls, path: Path | str, *, model_type: str | None = None,
                        trust_pickle: bool = False, threads: int | None = None) -> "EdgePredictor":
        """Load a PyTorch checkpoint (needs the ``export`` extra) into the predictor API."""
        from .models.io import load_model

        sam, _spec = load_model(path, model_type=model_type, trust_pickle=trust_pickle)
        return cls.from_model(sam, threads=threads)

    def activate(self) -> "EdgePredictor":
        """Create both sessions now (otherwise done on first use). Returns ``self``."""
        self.encoder.activate()
        self.decoder.activate()
        return self

    def close(self) -> None:
        """Release both sessions (a later call opens them again)."""
        self.encoder.deactivate()
        self.decoder.deactivate()

    def __enter__(self) -> "EdgePredictor":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Compute the embedding of ``image`` (HxWx3 uint8, RGB or BGR) and make it current."""
        self.set_embedding(self.encode(image, image_format))

    def encode(self, image: np.ndarray, image_format: str = "RGB") -> ImageEmbedding:
        """The embedding of ``image`` (HxWx3 uint8, RGB or BGR), without changing the current image.

        Example:
            >>> import numpy as np
            >>> class Encoder:  # stands in for a runner of the image_encoder graph
            ...     def infer(self, feed): return {"image_embeddings": np.zeros((1, 8, 4, 4), np.float32)}
            >>> p = EdgePredictor(Encoder(), None, image_size=64, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))
            >>> emb = p.encode(np.zeros((48, 64, 3), np.uint8))
            >>> emb.original_size, emb.input_size, p.is_image_set
            ((48, 64), (48, 64), False)
            >>> p.set_embedding(emb); p.is_image_set
            True
        """
        if image_format not in ("RGB", "BGR"):
            raise UsageError(f"image_format must be 'RGB' or 'BGR', not {image_format!r}")
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            shape = getattr(image, "shape", None)
            raise ImageError(f"expected an HxWx3 image array, got shape {shape}")
        if image.dtype != np.uint8:
            raise ImageError(f"expected a uint8 image, got {image.dtype}; convert with .astype(np.uint8)")
        check_image_size(image.shape[0], image.shape[1])
        if image_format == "BGR":
            image = image[..., ::-1]
        t0 = time.perf_counter()
        x, input_size = preprocess(image, self.image_size, self.pixel_mean, self.pixel_std, self.resize)
        self.timings["preprocess"] = time.perf_counter() - t0
        return self.encode_preprocessed(x, original_size=image.shape[:2], input_size=input_size)

    def encode_preprocessed(self, x: np.ndarray, *, original_size: tuple[int, int],
                            input_size: tuple[int, int]) -> ImageEmbedding:
        """Run the encoder on an already preprocessed 1x3xSxS float32 tensor."""
        with self._encoding:
            t0 = time.perf_counter()
            out = self.encoder.infer({"image": x})
            self.timings["encoder"] = time.perf_counter() - t0
        return ImageEmbedding(out["image_embeddings"], (int(original_size[0]), int(original_size[1])),
                              (int(input_size[0]), int(input_size[1])))

    def set_preprocessed(self, x: np.ndarray, *, original_size: tuple[int, int], input_size: tuple[int, int]) -> None:
        """Run the encoder on an already preprocessed 1x3xSxS float32 tensor and make it current."""
        self.set_embedding(self.encode_preprocessed(x, original_size=original_size, input_size=input_size))

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Make ``embedding`` (from :meth:`encode`, of this predictor's model) the current image."""
        if not isinstance(embedding, ImageEmbedding):
            raise UsageError(f"set_embedding takes an ImageEmbedding from encode(), not {type(embedding).__name__}")
        with self._decoding:
            self.features = embedding.features
            self.original_size = embedding.original_size
            self.input_size = embedding.input_size
            self.is_image_set = True
            self._image_thread = threading.get_ident()

    @property
    def embedding(self) -> ImageEmbedding:
        """The current image as an :class:`ImageEmbedding`."""
        if not self.is_image_set:
            raise UsageError("no image set; call set_image(image) first")
        return ImageEmbedding(self.features, self.original_size, self.input_size)  # type: ignore[arg-type]

    def get_image_embedding(self) -> np.ndarray:
        """The current image's embedding, 1xCxGxG."""
        if not self.is_image_set:
            raise UsageError("no image set; call set_image(image) first")
        return self.features

    def reset_image(self) -> None:
        with self._decoding:
            self._image_thread = threading.get_ident()
            self.is_image_set = False
            self.features: np.ndarray | None = None
            self.original_size: tuple[int, int] | None = None
            self.input_size: tuple[int, int] | None = None

    # ------------------------------------------------------------------ prompts
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for the prompts, in original-image pixel coordinates (x, y).

        Arguments:
            point_coords: Nx2 points (x, y).
            point_labels: N labels, 1 foreground, 0 background.
            box: length-4 box x0, y0, x1, y1.
            mask_input: 1xLxL low-resolution logits from a previous call (L = 4 x grid).
            multimask_output: three masks (for ambiguous prompts) instead of one.
            return_logits: return logits instead of binary masks.

        Returns:
            masks (CxHxW bool, or float logits), scores (C,), low-res logits (CxLxL).

        Runs on any bundle, also one whose decoder predates the prompt axis (one prompt per call).
        """
        if not self.is_image_set:
            raise UsageError("no image set; call set_image(image) before predict()")
        _flags(multimask_output, return_logits)
        with self._decoding:
            self._check_image_thread()
            feed = self.prompt_feed(point_coords, point_labels, box, mask_input)
            masks, scores, low_res = self._decode(feed, multimask_output, return_logits)
        return masks[0], scores[0], low_res[0]

    def predict_batch(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        mask_inputs: Any = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for B prompts against the image of :meth:`set_image`, one decoder call
        per chunk of at most :attr:`prompt_chunk` prompts (SamPredictor.predict_torch's batch).

        Arguments:
            points: BxNx2 points (x, y) in original-image pixels, with ``labels``.
            labels: BxN labels, 1 foreground, 0 background, -1 padding (rows of prompts with
                fewer points; a pad point takes part in the decoder's attention as SAM's own pad
                point does, so a padded prompt is close to, not identical with, the unpadded one).
            boxes: Bx4 boxes x0, y0, x1, y1; with ``points`` each prompt is its points + its box.
            mask_inputs: Bx1xLxL (or BxLxL) low-res logits of previous calls (L = 4 x grid), or a
                list of B entries each 1xLxL, LxL or ``None`` (that prompt has no mask input).
            multimask_output, return_logits: as in :meth:`predict`.

        Returns:
            masks BxCxHxW (bool, or float32 logits), scores BxC, low-res logits BxCxLxL, with
            C = 3 when ``multimask_output`` else 1, the same masks as B :meth:`predict` calls.

        Memory: the decoder runs on chunks of :attr:`prompt_chunk` prompts (at most the
        decoder's own limit, e.g. a TensorRT engine's ``decoder_batch`` max); each chunk's masks
        are resized into the preallocated output, which itself holds B x C x H x W masks.

        Raises:
            PromptError: mismatched B, wrong shapes, prompts outside the image (one line).
            BundleError: the bundle's decoder has no prompt axis (exported before it; re-export).
        """
        if not self.is_image_set:
            raise UsageError("no image set; call set_image(image) before predict_batch()")
        _flags(multimask_output, return_logits)
        self.check_prompt_axis()
        with self._decoding:
            self._check_image_thread()
            feed = self.batch_feed(points, labels, boxes, mask_inputs)
            return self._decode(feed, multimask_output, return_logits)

    def _check_image_thread(self) -> None:
        """Refuse a predict on the current image from a thread other than the one that set it."""
        if self._image_thread != threading.get_ident():
            raise ConcurrentUseError(
                "the current image of this EdgePredictor was set by another thread; set the image on "
                f"this thread first (set_image / set_embedding), or {PREDICTOR_THREADS}")

    def check_prompt_axis(self) -> None:
        """Refuse (one-line BundleError) a decoder without the prompt axis: a bundle exported
        before batched prompts, whose decoder takes one prompt per call."""
        from .errors import BundleError
        from .models.graph_spec import has_prompt_axis

        specs = self.decoder.input_specs()
        if not has_prompt_axis(specs):
            shape = tuple(specs["point_coords"].shape) if "point_coords" in specs else None
            raise BundleError(
                f"this bundle's {DECODER} takes one prompt per call (point_coords {shape}, exported before "
                "batched prompts); re-export it with `slimsam-edge export` to use predict_batch, or call "
                "predict() once per prompt")

    def chunk_size(self) -> int:
        """Prompts per decoder call: :attr:`prompt_chunk`, at most the decoder's own limit.

        Example:
            >>> class R:  # a runner without a prompt limit (ONNX Runtime, OpenVINO, torch)
            ...     def max_prompts(self): return None
            >>> p = EdgePredictor(R(), R(), image_size=256, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))
            >>> p.chunk_size()
            32
        """
        limit = self.decoder.max_prompts()
        return max(1, min(self.prompt_chunk, limit) if limit else self.prompt_chunk)

    def _decode(self, feed: dict[str, np.ndarray], multimask_output: bool,
                return_logits: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the decoder on ``feed``'s B prompts in chunks; select the masks (token 0 alone, or
        tokens 1..3) and resize them to the original image. Returns B-leading arrays."""
        b = feed["point_coords"].shape[0]
        sel = slice(1, None) if multimask_output else slice(0, 1)
        h, w = self.original_size  # type: ignore[misc]
        chunk = self.chunk_size()
        masks = scores = low_res = scratch = None
        t_dec = t_post = 0.0
        for lo in range(0, b, chunk):
            hi = min(b, lo + chunk)
            part = {k: v if k == "image_embeddings" else v[lo:hi] for k, v in feed.items()}
            t0 = time.perf_counter()
            out = self.decoder.infer(part)
            t1 = time.perf_counter()
            s, low = out["iou_predictions"][:, sel], out["low_res_masks"][:, sel]
            if masks is None:
                c, side = low.shape[1], low.shape[-1]
                masks = np.empty((b, c, h, w), np.float32 if return_logits else bool)
                scores, low_res = np.empty((b, c), np.float32), np.empty((b, c, side, side), np.float32)
                scratch = None if return_logits else np.empty((h, w), np.float32)
            scores[lo:hi], low_res[lo:hi] = s, low  # type: ignore[index]
            # each returned mask resized on its own straight into the output (binary ones through
            # one reused float plane); a channel-last resize of B*C planes measured 5-10x slower
            for i, prompt in enumerate(low, lo):
                upscale_masks(prompt, self.input_size, self.original_size, self.image_size, masks[i],
                              threshold=None if return_logits else self.mask_threshold, scratch=scratch)
            t_dec += t1 - t0
            t_post += time.perf_counter() - t1
        self.timings["decoder"] = t_dec
        self.timings["postprocess"] = t_post
        return masks, scores, low_res  # type: ignore[return-value]

    def prompt_feed(
        self,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
    ) -> dict[str, np.ndarray]:
        """Validate one prompt and build the decoder feed (coordinates in the model's frame)."""
        if (point_coords is None) != (point_labels is None):
            raise PromptError("point_coords and point_labels must be given together")
        pts = lab = b = mask = None
        if point_coords is not None:
            pts = _numbers(point_coords, "point_coords")
            lab = _numbers(point_labels, "point_labels").reshape(-1)
            if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
                raise PromptError(f"point_coords must have shape (N, 2), got {pts.shape}")
            if pts.shape[0] > MAX_POINTS_PER_PROMPT:
                raise PromptError(f"{pts.shape[0]} points in one prompt, more than {MAX_POINTS_PER_PROMPT} "
                                  "(limits.MAX_POINTS_PER_PROMPT); SAM needs a few clicks, give fewer points")
            if lab.shape[0] != pts.shape[0]:
                raise PromptError(f"{pts.shape[0]} points but {lab.shape[0]} labels")
            pts, lab = _finite(pts, "point_coords"), _finite(lab, "point_labels")
            if not np.all(np.isin(lab, (0, 1))):
                raise PromptError("point labels must be 1 (foreground) or 0 (background)")
            pts, lab = pts[None], lab[None]
        if box is not None:
            b = _numbers(box, "box").reshape(-1)
            if b.shape[0] != 4:
                raise PromptError(f"box must have 4 numbers x0,y0,x1,y1, got {b.shape[0]}")
            b = _finite(b, "box")[None]
        low = self._mask_side()
        if mask_input is not None:
            m = _numbers(mask_input, "mask_input")
            if m.shape not in ((1, low, low), (1, 1, low, low)):
                raise PromptError(f"mask_input must have shape (1, {low}, {low}), got {m.shape}")
            mask = _logits(m, "mask_input").reshape(1, 1, low, low)
        elif pts is None and b is None:
            raise PromptError("no prompt given: pass point_coords + point_labels, a box, or mask_input")
        has = None if mask is None else np.ones(1, np.float32)
        return self._feed(pts, lab, b, mask, has, batched=False)

    def batch_feed(self, points: Any = None, labels: Any = None, boxes: Any = None,
                   mask_inputs: Any = None) -> dict[str, np.ndarray]:
        """Validate B prompts (:meth:`predict_batch`'s arguments) and build the decoder feed."""
        if (points is None) != (labels is None):
            raise PromptError("points and labels must be given together (points BxNx2, labels BxN)")
        sizes: dict[str, int] = {}
        pts = lab = b = mask = has = None
        if points is not None:
            pts = _numbers(points, "points")
            lab = _numbers(labels, "labels")
            if pts.ndim != 3 or pts.shape[2] != 2 or 0 in pts.shape:
                raise PromptError(f"points must have shape (B, N, 2) with B, N >= 1, got {pts.shape}; "
                                  "for one prompt pass points[None]")
            if pts.shape[1] > MAX_POINTS_PER_PROMPT:
                raise PromptError(f"{pts.shape[1]} points per prompt, more than {MAX_POINTS_PER_PROMPT} "
                                  "(limits.MAX_POINTS_PER_PROMPT); SAM needs a few clicks, give fewer points")
            if lab.shape != pts.shape[:2]:
                raise PromptError(f"labels must have shape (B, N) = {pts.shape[:2]} like points, got {lab.shape}")
            pts, lab = _finite(_batch(pts, "points"), "points"), _finite(lab, "labels")
            if not np.all(np.isin(lab, (-1, 0, 1))):
                raise PromptError("labels must be 1 (foreground), 0 (background) or -1 (padding)")
            sizes["points"] = pts.shape[0]
        if boxes is not None:
            b = _numbers(boxes, "boxes")
            if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] == 0:
                raise PromptError(f"boxes must have shape (B, 4) (x0, y0, x1, y1 per prompt), got {b.shape}")
            b = _finite(_batch(b, "boxes"), "boxes")
            sizes["boxes"] = b.shape[0]
        if mask_inputs is not None:
            mask, has = self._batch_masks(mask_inputs)
            sizes["mask_inputs"] = mask.shape[0]
        if not sizes:
            raise PromptError("no prompt given: pass points + labels, boxes, or mask_inputs")
        if len(set(sizes.values())) > 1:
            raise PromptError("prompt counts differ: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
                              + "; pass the same B (one entry per prompt) to each")
        if b is None and (mask is None or not has.all()):  # type: ignore[union-attr]
            empty = np.ones(next(iter(sizes.values())), bool) if lab is None else (lab == -1).all(1)
            if mask is not None:
                empty &= has == 0  # type: ignore[operator]
            if empty.any():
                raise PromptError(f"prompt {int(np.argmax(empty))} has no point (all labels -1), box or "
                                  "mask input; give every prompt at least one of them")
        return self._feed(pts, lab, b, mask, has, batched=True)

    def _batch_masks(self, mask_inputs: Any) -> tuple[np.ndarray, np.ndarray]:
        """``mask_inputs`` (array or list with ``None`` entries) as Bx1xLxL logits + ``has`` (B,)."""
        low = self._mask_side()
        want = f"(B, 1, {low}, {low})"
        if isinstance(mask_inputs, (list, tuple)):
            if not mask_inputs:
                raise PromptError(f"mask_inputs is empty; pass an array {want} or one entry per prompt")
            _batch(mask_inputs, "mask_inputs")
            mask = np.zeros((len(mask_inputs), 1, low, low), np.float32)
            has = np.zeros(len(mask_inputs), np.float32)
            for i, m in enumerate(mask_inputs):
                if m is None:
                    continue
                m = _numbers(m, f"mask_inputs[{i}]")
                if m.shape not in ((low, low), (1, low, low)):
                    raise PromptError(f"mask_inputs[{i}] must have shape (1, {low}, {low}) or None, got {m.shape}")
                mask[i, 0], has[i] = _logits(m, f"mask_inputs[{i}]").reshape(low, low), 1.0
            return mask, has
        m = _numbers(mask_inputs, "mask_inputs")
        if m.ndim == 3:
            m = m[:, None]
        if m.ndim != 4 or m.shape[1:] != (1, low, low) or m.shape[0] == 0:
            raise PromptError(f"mask_inputs must have shape {want}, got {m.shape}")
        return _logits(_batch(m, "mask_inputs"), "mask_inputs"), np.ones(m.shape[0], np.float32)

    def _mask_side(self) -> int:
        return 4 * int(self.features.shape[-1])  # type: ignore[union-attr]

    def _feed(self, pts: np.ndarray | None, lab: np.ndarray | None, boxes: np.ndarray | None,
              mask: np.ndarray | None, has: np.ndarray | None, *, batched: bool) -> dict[str, np.ndarray]:
        """The decoder feed of B validated prompts: points BxNx2 + labels BxN, boxes Bx4, mask Bx1xLxL
        + has B (each ``None`` when absent); checks they lie in the image, appends the box corners
        (labels 2, 3) or SAM's pad point, maps coordinates to the model's frame."""
        h, w = self.original_size  # type: ignore[misc]
        n = next(a.shape[0] for a in (pts, boxes, mask) if a is not None)
        coords_list, labels_list = [], []
        if pts is not None:
            real = lab != -1
            for i in range(n):
                _inside(pts[i][real[i]], h, w, f"points[{i}]" if batched else "point")
            coords_list.append(np.where(real[..., None], pts, 0.0))  # pad points' coordinates are unused
            labels_list.append(lab)
        if boxes is not None:
            for i in range(n):
                name = f"boxes[{i}]" if batched else "box"
                if not (boxes[i, 2] > boxes[i, 0] and boxes[i, 3] > boxes[i, 1]):
                    raise PromptError(f"{name} {boxes[i].tolist()} must have x1 > x0 and y1 > y0")
                _inside(boxes[i].reshape(2, 2), h, w, f"{name} corner")
            coords_list.append(boxes.reshape(n, 2, 2))
            labels_list.append(np.tile([2.0, 3.0], (n, 1)))
        else:  # SAM adds a padding point when there is no box
            coords_list.append(np.zeros((n, 1, 2)))
            labels_list.append(-np.ones((n, 1)))
        low = self._mask_side()
        coords = self.transform.apply_coords(np.concatenate(coords_list, axis=1), (h, w))
        return {
            "image_embeddings": self.features,  # type: ignore[dict-item]
            "point_coords": coords.astype(np.float32),
            "point_labels": np.concatenate(labels_list, axis=1).astype(np.float32),
            "mask_input": mask if mask is not None else np.zeros((n, 1, low, low), np.float32),
            "has_mask_input": has if has is not None else np.zeros(n, np.float32),
        }


def _flags(multimask_output: Any, return_logits: Any) -> None:
    """Refuse a flag that is not a bool (``"no"`` is truthy: it must not mean yes)."""
    for name, value in (("multimask_output", multimask_output), ("return_logits", return_logits)):
        if not isinstance(value, (bool, np.bool_)):
            raise PromptError(f"{name} must be True or False, not {value!r}")


def _numbers(value: Any, name: str) -> np.ndarray:
    """``value`` as an array of real numbers (bool, int or float; not copied: the shape is checked
    before anything is allocated), else a one-line PromptError naming the argument (strings,
    ragged lists, ``None`` entries, objects, complex numbers).

    Example:
        >>> _numbers([[1, 2]], "point_coords").shape
        (1, 2)
        >>> _numbers([["a", 2]], "point_coords")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.PromptError: point_coords must be an array of numbers, got <U21 values
    """
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists, objects whose __array__ fails: the caller's value
        raise PromptError(f"{name} must be an array of numbers, got {type(value).__name__} "
                          f"({str(err).splitlines()[0][:80] if str(err) else type(err).__name__})") from None
    if arr.dtype.kind not in "biuf":
        raise PromptError(f"{name} must be an array of numbers, got {arr.dtype} values")
    return arr


def _finite(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` as float64 when every value is finite, else a one-line PromptError naming it."""
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise PromptError(f"{name} holds NaN or infinite values; pass finite numbers")
    return arr


def _logits(arr: np.ndarray, name: str) -> np.ndarray:
    """Mask logits as float32: finite and within +-:data:`~slimsam_edge.limits.MAX_MASK_LOGIT`."""
    if not (np.abs(arr) <= MAX_MASK_LOGIT).all():  # NaN fails the comparison too
        raise PromptError(f"{name} must hold finite logits within +-{MAX_MASK_LOGIT:g} (limits.MAX_MASK_LOGIT), "
                          "such as the low-res masks a previous predict returned")
    return arr.astype(np.float32)


def _batch(arr: Any, name: str) -> Any:
    """``arr`` when its length (prompts) is at most :data:`~slimsam_edge.limits.MAX_PROMPTS`."""
    if len(arr) > MAX_PROMPTS:
        raise PromptError(f"{len(arr)} prompts in one call, more than {MAX_PROMPTS} (limits.MAX_PROMPTS); "
                          "split them over several predict_batch calls")
    return arr


def _inside(pts: np.ndarray, h: int, w: int, what: str) -> None:
    bad = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h) | ~np.isfinite(pts).all(1)
    if bad.any():
        x, y = pts[bad][0]
        raise PromptError(f"{what} ({x:g}, {y:g}) is outside the {w}x{h} image (x in 0..{w}, y in 0..{h})")


#: precisions that are also run-time hints on another precision's artifact -> that precision:
#: bf16 (fp16) on an fp32 artifact, int8-bf16 on an int8 one (its unquantized ops in bf16)
HINTED_ON = {"bf16": "fp32", "fp16": "fp32", "int8-bf16": "int8"}
#: of those, the ones an artifact is looked up for when the bundle has none of the precision itself
_FALLBACK = ("bf16", "int8-bf16")


def find_artifact(bundle: Any, graph: str, backend: str | None, precision: str | None) -> Any:
    """The artifact for ``precision``: an exported one, else (bf16, int8-bf16) the fp32 / int8 one,
    opened with the hint; refused (BundleError saying why) where the backend cannot run the
    precision (``Backend.cannot``: ONNX Runtime has no bf16).

    Illustration (not run as a doctest: it needs files or a model)::

        find_artifact(load_bundle("b/"), "image_encoder", "openvino", "bf16").precision
        # -> 'fp32'
    """
    from .errors import BundleError
    from .runtimes import backends as registered

    try:
        return bundle.find(graph, backend=backend, precision=precision)
    except BundleError as err:
        if precision not in _FALLBACK:
            raise
        art = bundle.find(graph, backend=backend, precision=HINTED_ON[precision])
        known = registered().get(art.backend)
        if known is not None and precision in known.cannot:
            raise BundleError(f"{err}; {art.backend} cannot run {precision}{known.why_cannot(precision)}") from None
        return art


def open_artifact(root: Path | str, art: Any, *, precision: str | None = None, device: str | None = None,
                  threads: int | None = None, extra: dict[str, Any] | None = None) -> Runner:
    """A (not yet activated) runner of ``art``, a file of the bundle in ``root``: opened with the
    artifact's precision hint (else fp32), or with ``precision`` where that is a run-time hint on
    the artifact's precision (:data:`HINTED_ON`: bf16 / fp16 on an fp32 artifact, int8-bf16 on an
    int8 one), and only the validated facts its runner checks (``Backend.runner_extra``: every
    ``extra`` key checked against the backend's schema, no runtime settings from the manifest), plus
    the run-time settings ``extra`` (a :class:`~slimsam_edge.runtimes.tuning.RuntimeTuning`'s). The one way a bundle's artifact is opened
    (:meth:`EdgePredictor.from_bundle`, ``slimsam-edge verify``, the export's accuracy gate).

    Raises:
        BackendUnavailableError: the backend's package is not installed (one line naming the extra).
        BundleError: the hint or those facts are malformed in the manifest.

    Illustration (not run as a doctest: it needs files or a model)::

        with open_artifact(b.root, b.find("image_encoder", "onnxruntime")) as r:
            r.infer({"image": x})
    """
    from .bundle import MANIFEST

    where = f"bundle {root}: {MANIFEST}"
    stored = art.precision_hint(where) or "fp32"
    hint = precision if precision is not None and HINTED_ON.get(precision) == art.precision else stored
    facts = get_backend(art.backend).runner_extra(art, where)  # every extra key checked (manifest_schema)
    opts = RunnerOptions(threads=threads, device=device or "cpu", precision=hint, extra={**facts, **(extra or {})})
    from .bundle import artifact_source  # its files are read as verified bytes when it activates

    return open_runner(artifact_source(root, art), backend=art.backend, options=opts)


def check_hint_backend(backend: str, hint: str) -> None:
    """Refuse (one-line UsageError) a performance ``hint`` for a backend whose runner has none
    (:attr:`Runner.performance_hints <slimsam_edge.runtimes.base.Runner.performance_hints>`).

    Example:
        >>> check_hint_backend("openvino", "throughput")
        >>> check_hint_backend("torch", "latency")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: torch has no performance hint (hint 'latency'); drop it, or use a backend that has one: openvino
    """
    from .runtimes import registered_backends

    if hint in get_backend(backend).runner.performance_hints:
        return
    having = [b for b in registered_backends() if hint in get_backend(b).runner.performance_hints]
    raise UsageError(f"{backend} has no performance hint (hint {hint!r}); drop it, or use a backend that has "
                     f"one: {', '.join(having) or 'none installed'}")


def runtime_defaults(backend: str | None, info: dict[str, Any] | None = None) -> tuple[str | None, int | None]:
    """``(device, threads)`` of the detected profile's ``[runtime]`` table when ``backend`` is that
    profile's default backend, else ``(None, None)``: a device string ("GPU", "cuda:0") belongs to
    the backend the profile runs, not to its fallbacks. Threads 0 (the runtime's default) -> None.

    Example:
        >>> runtime_defaults("onnxruntime", {"is_jetson": False})  # the cpu profile: device "cpu"
        ('cpu', None)
        >>> runtime_defaults("openvino", {"is_jetson": False})     # not cpu's default backend
        (None, None)
    """
    from .devices import default_profile, detected, load_profile

    profile = load_profile(default_profile(detected() if info is None else info))
    if backend is None or backend != profile.default_backend:
        return None, None
    return profile.runtime.device, profile.runtime.threads or None


def auto_pick(bundle: Any, backend: str | None, precision: str | None,
              info: dict[str, Any] | None = None) -> tuple[str | None, str | None]:
    """The (backend, precision) to open when not told, for this machine (``info``: :func:`detect`).

    backend: the first backend of the detected profile's preference that ``bundle`` holds and that
    is installed, else the first installed one of the bundle's own preference (``None`` when none
    is: opening then says what to install). Backends marked ``auto=False`` (torch, the reference)
    run only when asked for. precision: the profile's default precision when the
    bundle has it for that backend and the machine can run it, else fp32 (``None`` where the
    bundle has no fp32 either: the first listed). Detection is cached per process.

    Raises:
        UnsupportedOnThisMachineError: ``precision`` asked for is one the machine cannot run.

    Illustration (not run as a doctest: it needs a bundle)::

        auto_pick(load_bundle("jetson-bundle/"), None, None)   # on a Jetson with TensorRT
        # -> ('tensorrt', 'fp16')
    """
    from .devices import default_profile, detected, load_profile, why_not
    from .errors import UnsupportedOnThisMachineError
    from .runtimes import backends as registered

    info = detected() if info is None else info
    if precision is not None:
        reason = why_not(precision, info)
        if reason:
            raise UnsupportedOnThisMachineError(reason)
    if backend is not None and precision is not None:
        return backend, precision
    profile = load_profile(default_profile(info))
    known = registered()
    installed = [b for b in bundle.backends() if b in known and known[b].auto and known[b].runner.available()]
    if backend is None:
        ranked = [b for b in profile.backends if b in installed] + installed
        backend = ranked[0] if ranked else None
    if precision is None:
        held = {a.precision for a in bundle.manifest.artifacts
                if a.graph in (ENCODER, DECODER) and (backend is None or a.backend == backend)}
        default = profile.default_precision
        if default in held and why_not(default, info) is None:
            precision = default
        elif "fp32" in held:
            precision = "fp32"
    return backend, precision
