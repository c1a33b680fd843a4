"""Every bound on input size, prompt count, threads and model shape, in one place.

Each limit is refused *before* the memory or time it guards is spent, with a one-line typed error
(:mod:`slimsam_edge.errors`, exit code 2 through the CLI) that names the value, the limit and what
to do. The values are chosen so that no real use hits them: they sit well above the largest
cameras, prompt sets and models there are, and well below what exhausts an edge device.
docs/reliability.md lists them with the reasons.

Example:
    >>> MAX_IMAGE_PIXELS >= 12000 * 9000        # a 108 MP phone photo fits
    True
    >>> check_threads(2, "threads")
    2
    >>> try:
    ...     check_threads(10**6, "--threads")
    ... except UsageError as err:
    ...     print(str(err)[:50])
    --threads 1000000 is more than the 4 x CPUs thread
"""

from __future__ import annotations

import os

from .errors import ImageError, UsageError

# ---------------------------------------------------------------- images
#: Most pixels (height x width) of an image, checked from the file header before decoding and on
#: arrays given to :meth:`EdgePredictor.set_image`. 2**27 = 134 M pixels holds every camera's
#: full-resolution photo (a 108 MP phone sensor is 12000 x 9000) while its decoded RGB copy (400 MB)
#: and its three binary masks (400 MB) still fit the memory of an 8 GB edge board. A 50 KB PNG can
#: claim 20000 x 20000 (1.2 GB decoded, 8 GB through the pipeline); that is refused here.
MAX_IMAGE_PIXELS = 2**27

#: Longest image side. 2**15 = 32768 is twice the widest panorama a phone writes; it bounds the
#: antialiased resize's filter (at most 2 x 32768 / 256 taps per output pixel for the smallest model)
#: so a 1 x 10**8 strip cannot ask for gigabytes of filter weights.
MAX_IMAGE_SIDE = 2**15

#: Largest image file read into memory. 2**30 = 1 GiB holds an uncompressed 16-bit RGBA TIFF of
#: :data:`MAX_IMAGE_PIXELS`; a bigger file is refused before it is read.
MAX_IMAGE_FILE_BYTES = 2**30

# ---------------------------------------------------------------- prompts
#: Most points in one prompt (``point_coords`` rows; per prompt of ``predict_batch``). SAM is
#: trained with up to about 10 clicks; every point is one token of the decoder's attention, so
#: memory grows with its square: 30,000 points asked ONNX Runtime for 28.8 GB. 64 points cost a few
#: MB per prompt.
MAX_POINTS_PER_PROMPT = 64

#: Most prompts in one :meth:`EdgePredictor.predict_batch` call. The masks it returns are
#: B x C x H x W, so B is the factor the caller controls; 1024 = a 32 x 32 "segment everything"
#: grid, which the mask generator sends 64 at a time.
MAX_PROMPTS = 1024

#: Most points per side of a "segment everything" grid (:class:`~slimsam_edge.apps.everything.MaskGenerator`,
#: ``--points-per-side``): 256 x 256 = 65,536 prompts an image (SAM uses 32); 10**12 would ask for
#: a grid of 10**24 points.
MAX_POINTS_PER_SIDE = 256

#: Most objects in a procedural video clip (``data video --objects``, ``bench --objects``).
MAX_OBJECTS = 12

#: Largest magnitude of a ``mask_input`` logit. A decoder returns logits of a few tens; values near
#: float32's range overflow inside the decoder's convolutions into NaN scores.
MAX_MASK_LOGIT = 1e4

# ---------------------------------------------------------------- threads
#: Runtime threads allowed per CPU this process may run on. More intra-op threads than CPUs never
#: run faster; oversubscribed spinning threads make each call far slower (``--threads 1000`` took
#: 155 s on 2 CPUs). Four per CPU leaves room for hyper-threading and a profile written for a
#: larger board, and bounds the slowdown.
THREADS_PER_CPU = 4

# ---------------------------------------------------------------- architecture specs
#: Most encoder blocks. SAM ViT-H has 32; 256 leaves room for any research variant. A spec with
#: 20,000 blocks took 43 s and 1.6 GB before it was refused.
MAX_BLOCKS = 256

#: Largest square input side (``img_size``). SAM uses 1024; 8192 is 64x its token count.
MAX_IMAGE_SIZE = 8192

#: Largest width of any layer (embed_dim, q/k/v width, MLP width, output channels). ViT-H's MLP is
#: 5120 wide; 16384 is 3x that (the total is bounded by :data:`MAX_PARAMS`).
MAX_WIDTH = 16384

#: Most attention heads (encoder and decoder). SAM uses 8-16.
MAX_HEADS = 1024

#: Most mask-decoder transformer layers / IoU-head layers / extra multimask outputs (SAM: 2 / 3 / 3).
MAX_DECODER_DEPTH = 64

#: Most encoder parameters a spec may describe, counted from the spec before anything is built.
#: SAM ViT-H's encoder has 0.63 G; 2**30 (1.07 G, 4.3 GB in fp32) leaves room above it and bounds
#: what a hostile spec can make ``build_sam`` allocate.
MAX_PARAMS = 2**30

#: Largest spec JSON read. A 256-block spec is about 10 KB; 2**20 = 1 MiB.
MAX_SPEC_BYTES = 2**20


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one), at least 1.

    Example:
        >>> usable_cpus() >= 1
        True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS / Windows: no affinity API
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """The most runtime threads allowed here: :data:`THREADS_PER_CPU` x :func:`usable_cpus`.

    Example:
        >>> max_threads() == THREADS_PER_CPU * usable_cpus()
        True
    """
    return THREADS_PER_CPU * usable_cpus()


def check_threads(threads: object, what: str = "threads") -> int | None:
    """``threads`` if it is ``None`` (the runtime's default) or an int in 0 .. :func:`max_threads`
    (0 = the runtime's default too); else a one-line UsageError naming ``what``.

    Example:
        >>> check_threads(None), check_threads(0)
        (None, 0)
        >>> check_threads(-1, "--threads")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: --threads -1 must be >= 0 (0 or omitted: the runtime's default)
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise UsageError(f"{what} must be a whole number of threads, not {threads!r}")
    if threads < 0:
        raise UsageError(f"{what} {threads} must be >= 0 (0 or omitted: the runtime's default)")
    limit = max_threads()
    if threads > limit:
        raise UsageError(
            f"{what} {threads} is more than the {THREADS_PER_CPU} x CPUs threads this machine can use "
            f"({usable_cpus()} CPUs): pass at most {limit}, or omit it for the runtime's default")
    return threads


def check_image_size(height: int, width: int, name: str = "the image") -> None:
    """Refuse (one-line ImageError) an image over :data:`MAX_IMAGE_PIXELS` or
    :data:`MAX_IMAGE_SIDE`; called with the header's size before decoding, and on arrays.

    Example:
        >>> check_image_size(9000, 12000)
        >>> check_image_size(20000, 20000, "big.png")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.ImageError: image big.png is 20000x20000 (400.0 M pixels), more than the 134.2 M pixels slimsam-edge reads (limits.MAX_IMAGE_PIXELS); downscale it first (the model sees at most 1024 pixels per side)
    """
    height, width = int(height), int(width)
    if height * width > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"image {name} is {width}x{height} ({height * width / 1e6:.1f} M pixels), more than the "
            f"{MAX_IMAGE_PIXELS / 1e6:.1f} M pixels slimsam-edge reads (limits.MAX_IMAGE_PIXELS); "
            "downscale it first (the model sees at most 1024 pixels per side)")
    if max(height, width) > MAX_IMAGE_SIDE:
        raise ImageError(
            f"image {name} is {width}x{height}, longer than {MAX_IMAGE_SIDE} pixels on one side "
            f"(limits.MAX_IMAGE_SIDE); crop or downscale it first")
