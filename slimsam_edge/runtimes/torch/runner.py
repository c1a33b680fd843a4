"""The PyTorch reference backend (eager). Needs the ``export`` extra; never used by edge apps.

The artifact is a checkpoint (the bundle's ``model.safetensors``) plus ``options.extra["graph"]``
naming which graph to run (``image_encoder``, ``mask_decoder_lowres``, ``mask_decoder``), or an
already built ``torch.nn.Module`` wrapper from :mod:`slimsam_edge.models.graphs`.

Illustration (not run as a doctest: it needs files or a model)::

    r = open_runner("bundle/model.safetensors", backend="torch",
                    options=RunnerOptions(extra={"graph": "image_encoder"}))
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np

from ...errors import UsageError
from ...fsutil import HashedFiles
from ..base import FeedDict, Runner, TensorSpec


class TorchRunner(Runner):
    """Run one SAM graph eagerly in PyTorch (the reference every export is validated against)."""

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("torch") is not None

    def _activate(self) -> None:
        import torch

        from ...models.graph_spec import ONNX_SPECS
        from ...models.graphs import make_wrapper

        graph = self.options.extra.get("graph", "image_encoder")
        if graph not in ONNX_SPECS:
            raise UsageError(f"torch runner: unknown graph {graph!r}; choose one of {sorted(ONNX_SPECS)}")
        self._spec = ONNX_SPECS[graph]
        if isinstance(self.artifact, torch.nn.Module):
            # a whole Sam model: wrap the requested graph; a wrapper: use it as is
            is_sam = hasattr(self.artifact, "image_encoder") and hasattr(self.artifact, "mask_decoder")
            self._module = make_wrapper(self.artifact, self._spec) if is_sam else self.artifact.eval()
            sam_spec = getattr(self.artifact, "spec", None)
        else:
            from ...models.io import load_model

            if isinstance(self.artifact, HashedFiles):  # a bundle's checkpoint: load a verified private copy
                with tempfile.TemporaryDirectory() as tmp:
                    copy = Path(tmp) / Path(self.artifact.path).name
                    copy.write_bytes(self.artifact.read())
                    sam, sam_spec = load_model(copy, trust_pickle=False)
            else:
                sam, sam_spec = load_model(self.artifact, trust_pickle=False)
            self._module = make_wrapper(sam, self._spec)
        self._model_spec = sam_spec or self.options.extra.get("model_spec")
        if self.options.threads:
            torch.set_num_threads(int(self.options.threads))
        if self.options.precision not in ("fp32", "bf16"):
            raise UsageError(f"torch runner supports fp32 and bf16, not {self.options.precision}")
        self._torch = torch

    def _specs(self) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
        s = self._model_spec
        grid = s.embed_grid if s else -1
        size = s.image_size if s else -1
        dim = s.prompt_embed_dim if s else -1
        shapes: dict[str, tuple[int | str, ...]] = {
            "image": (1, 3, size, size),
            "image_embeddings": (1, dim, grid, grid),
            "point_coords": (1, "num_points", 2),
            "point_labels": (1, "num_points"),
            "mask_input": (1, 1, 4 * grid, 4 * grid),
            "has_mask_input": (1,),
            "orig_im_size": (2,),
            "masks": (1, "masks", "height", "width"),
            "iou_predictions": (1, "masks"),
            "low_res_masks": (1, "masks", 4 * grid, 4 * grid),
        }
        f32 = np.dtype(np.float32)

        def spec(name: str, axes: dict[int, str]) -> TensorSpec:
            dims = list(shapes[name])
            for axis, label in axes.items():  # the graph's dynamic axes (the decoder's prompt axis)
                dims[axis] = label
            return TensorSpec(name, f32, tuple(dims))

        ins = {n: spec(n, axes) for n, axes in self._spec.inputs.items()}
        outs = {n: spec(n, axes) for n, axes in self._spec.outputs.items()}
        return ins, outs

    def _infer(self, feed: FeedDict) -> FeedDict:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in self._spec.inputs]
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.options.precision == "bf16"):
            out = self._module(*args)
        if isinstance(out, torch.Tensor):
            out = (out,)
        return {n: t.float().cpu().numpy() for n, t in zip(self._spec.outputs, out)}
