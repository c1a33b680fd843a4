"""The teacher's image embeddings, computed once per image and optionally cached on disk.

With a cache folder (``--cache-teacher DIR``) each embedding is stored as one fp16 safetensors
file named by a hash of the image bytes and the teacher's fingerprint (its spec and weights) and the
precision it ran in; a later request for the same image — a later step, the second phase, another
run of an ablation — reads the file instead of running the teacher. Targets are always the
fp16-rounded values when the cache is on (hit or miss alike), so a run gives the same result
whether its cache was cold or warm.

What is not cached: the teacher's *intermediate* features (q/k/v and MLP hidden activations that
bottleneck aligning uses in the first part of phase 1) — a SAM-B image has ~190 MB of them — so
those steps still run the teacher forward (its embedding is then stored for free), and the step-1
model's block outputs in phase 2 (that model is trained in the same job).

A student of a smaller input size (``compress --image-size``) has a choice of embedding target
(:data:`EMBEDDING_TARGETS`): the teacher's embedding at the teacher's size resized to the student's grid,
or the embedding of the unpruned model moved to the student's size, which the teacher's mask decoder
reads far better (on sam-mini at 160 px: 0.83 point mIoU against 0.75 for the resized one).

Example:
    >>> import numpy as np, torch
    >>> class Enc(torch.nn.Module):
    ...     def forward(self, x): return x.mean(1, keepdim=True)
    >>> class T(torch.nn.Module):
    ...     def __init__(self): super().__init__(); self.image_encoder = Enc()
    >>> import tempfile
    >>> emb = TeacherEmbeddings(T(), tempfile.mkdtemp(), key="t")
    >>> img = [np.zeros((2, 2, 3), np.uint8)]
    >>> x = torch.ones(1, 3, 2, 2)
    >>> _ = emb(img, x); _ = emb(img, x); emb.stats()["hits"], emb.stats()["misses"]
    (1, 1)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..fsutil import atomic_path
from ..models.regrid import resize_input
from .choices import EMBEDDING_TARGETS
from .runtime import autocast


def teacher_fingerprint(sam: torch.nn.Module, spec: Any = None) -> str:
    """Hex digest of ``spec`` and every tensor of ``sam`` (changes when any weight changes).

    Example:
        >>> teacher_fingerprint(torch.nn.Linear(2, 2)) == teacher_fingerprint(torch.nn.Linear(2, 2))
        False
    """
    h = hashlib.sha256((spec.to_json() if spec is not None else "").encode())
    for name, t in sorted(sam.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class TeacherEmbeddings:
    """Callable ``(images, x, computed=None) -> embeddings`` of ``teacher`` for a batch.

    Arguments:
        teacher: a ``Sam`` (its ``image_encoder`` runs on misses, on the batch resized to its input size).
        folder: cache folder, or ``None`` for no cache (then every call runs the teacher).
        key: the teacher's fingerprint (:func:`teacher_fingerprint`).
        bf16: run the teacher under bf16 autocast (part of the cache key).
    """

    def __init__(self, teacher: torch.nn.Module, folder: Path | str | None = None, *, key: str = "",
                 bf16: bool = False):
        self.teacher, self.key, self.bf16 = teacher, key, bool(bf16)
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = self.write_errors = 0

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), autocast(self.bf16, x.device.type):
            enc = self.teacher.image_encoder
            return enc(resize_input(x, getattr(enc, "img_size", x.shape[-1]))).float()

    def path(self, image: np.ndarray) -> Path:
        """The cache file of ``image``."""
        h = hashlib.sha256(f"{self.key}|{'bf16' if self.bf16 else 'fp32'}|{image.shape}|{image.dtype}".encode())
        h.update(np.ascontiguousarray(image).tobytes())
        return self.folder / f"{h.hexdigest()[:40]}.safetensors"  # type: ignore[operator]

    def __call__(self, images: Sequence[np.ndarray] | None, x: torch.Tensor,
                 computed: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings of the batch ``x`` (normalised ``images``) on ``x``'s device; ``computed``:
        already known. Cached files hold CPU fp16 tensors."""
        if self.folder is None or images is None:
            return computed.float() if computed is not None else self._run(x)
        from safetensors.torch import load_file, save_file

        out: list[torch.Tensor | None] = [None] * len(images)
        for i, img in enumerate(images):
            try:
                out[i] = load_file(str(self.path(img)))["embedding"]
                self.hits += 1
            except Exception:  # absent or damaged: recompute and overwrite
                pass
        miss = [i for i, e in enumerate(out) if e is None]
        if miss:
            fresh = computed[miss].float() if computed is not None else self._run(x[miss])
            for j, i in enumerate(miss):
                e = fresh[j].detach().to(torch.float16).cpu().contiguous()
                try:
                    with atomic_path(self.path(images[i])) as tmp:
                        save_file({"embedding": e}, str(tmp))
                except OSError:  # e.g. a full disk: train on, uncached (no partial file is left)
                    self.write_errors += 1
                out[i] = e
            self.misses += len(miss)
        return torch.stack([e for e in out if e is not None]).float().to(x.device)

    def stats(self) -> dict[str, Any]:
        """``{"dir", "hits", "misses", "write_errors", "files"}`` of this process (for the report)."""
        files = len(list(self.folder.glob("*.safetensors"))) if self.folder is not None else 0
        return {"dir": str(self.folder) if self.folder else None, "hits": self.hits, "misses": self.misses,
                "write_errors": self.write_errors, "files": files}
