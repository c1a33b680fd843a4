"""Load SAM-family checkpoints safely and save the project's own format.

Formats understood by :func:`load_model`:

- the project's format: ``*.safetensors`` with the :class:`ModelSpec` JSON in its metadata
  (key ``slimsam_edge.spec``) — written by :func:`save_model` and by ``compress``;
- a plain ``*.safetensors`` of SAM keys (spec detected from shapes, or given with ``spec=``);
- official SAM and SlimSAM "uniform" ``*.pth`` state dicts, read with
  ``torch.load(weights_only=True)``;
- pickled whole models (SlimSAM "global" ``SlimSAM-50.pth``) only with ``trust_pickle=True``;
- a local Hugging Face ``transformers`` ``SamModel`` folder (``config.json`` + ``model.safetensors``
  or ``pytorch_model.bin``) of SAM or a uniform SlimSAM, e.g. ``facebook/sam-vit-base`` or
  ``Zigeng/SlimSAM-uniform-77`` downloaded beforehand; read without ``transformers``, never
  downloading (see :mod:`slimsam_edge.models.hf`).

Illustration (not run as a doctest: it needs files or a model)::

    model, spec = load_model("sam_vit_b_01ec64.pth")
    save_model(model, spec, "out/model.safetensors")
    model, spec = load_model("SlimSAM-uniform-77/")
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError, ModelTypeError, SpecError
from ..fsutil import atomic_path
from ..limits import MAX_SPEC_BYTES
from .build import build_sam
from .hf import is_hf_dir, read_hf_dir
from .spec import ModelSpec, name_spec, preset, spec_from_shapes

SPEC_METADATA_KEY = "slimsam_edge.spec"
_PREFIXES = ("module.", "model.", "sam.")


def _strip_prefixes(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(sd)
    for prefix in _PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside what torch.load returned."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], (Mapping, torch.nn.Module)):
                return _unwrap(obj[key], path)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return _strip_prefixes(tensors)
    raise CheckpointError(f"{path}: holds no tensors of a model; is it a SAM checkpoint?")


def read_state_dict(
    path: Path | str, *, trust_pickle: bool = False
) -> tuple[dict[str, torch.Tensor], ModelSpec | None]:
    """Read tensors (and an embedded spec, if any) from ``path`` without building a model."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found; pass the path of a local SAM checkpoint")
    if path.is_dir():
        if not is_hf_dir(path):
            raise CheckpointError(
                f"{path}: is a folder without config.json; pass a checkpoint file (.pth or "
                ".safetensors) or a Hugging Face SamModel folder (config.json + weights)"
            )
        return read_hf_dir(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    _check_torch_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err) and "GLOBAL" not in str(err):
            raise CheckpointError(
                f"{path}: cannot be read as a PyTorch checkpoint (corrupt pickle data); "
                "is the file complete?"
            ) from None
        if not trust_pickle:
            raise CheckpointError(
                f"{path}: is a pickled model object, not a plain state dict; loading it runs "
                "code from the file. Only if you trust its source, pass --trust-pickle"
            ) from None
        obj = _load_pickle(path, err)
    except Exception as err:  # noqa: BLE001 - whatever a corrupt or foreign file makes torch raise
        # (a text file: KeyError from the pickle memo, a truncated zip: RuntimeError, ...)
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:160] if str(err) else 'corrupt'}); is the file complete?"
        ) from None
    return _unwrap(obj, path), None


def _check_torch_file(path: Path) -> None:
    """Refuse (one line) a file that is neither of torch.save's formats: a zip archive (PK..) or a
    legacy pickle (protocol opcode 0x80), e.g. a text file named .pth, before any unpickler reads it."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror}); check the path") from None
    if not head:
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint (the file is empty); pass a "
                              "SAM checkpoint (.pth) or a .safetensors file")
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint (neither a zip archive nor a pickle: it "
            f"starts with {head!r}); pass a SAM checkpoint (.pth) or a .safetensors file")


def _load_pickle(path: Path, first_error: Exception) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as err:
        raise CheckpointError(
            f"{path}: the pickled model needs the Python module {err.name!r} of the code that "
            "saved it (for SlimSAM 'global' checkpoints: the SlimSAM repository on PYTHONPATH)"
        ) from None
    except Exception as err:  # any unpickling failure is the file's fault, report it in one line
        raise CheckpointError(f"{path}: cannot unpickle ({type(err).__name__}: {err})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], ModelSpec | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors file ({err}); re-create it") from None
    return _strip_prefixes(sd), embedded_spec(meta)


def embedded_spec(meta: Mapping[str, str]) -> ModelSpec | None:
    """The architecture that :func:`save_model` stores in a safetensors file's metadata, if any.

    Illustration (not run as a doctest: it needs files or a model)::

        embedded_spec(read_metadata("runs/sam-mini/best.safetensors")).encoder.patch_size
        # -> 8
    """
    return ModelSpec.from_json(meta[SPEC_METADATA_KEY]) if SPEC_METADATA_KEY in meta else None


def read_metadata(path: Path | str) -> dict[str, str]:
    """The string metadata of a safetensors file (spec, recipe, lineage, ...); one-line error if corrupt.

    Illustration (not run as a doctest: it needs files or a model)::

        read_metadata("runs/sam-mini/best.safetensors")["best_step"]
        # -> '2700'
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors file ({err}); re-create it") from None


def resolve_spec(
    sd: Mapping[str, torch.Tensor], embedded: ModelSpec | None, model_type: str | None
) -> ModelSpec:
    """Pick the spec: forced ``model_type`` > embedded spec > detected from shapes."""
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    if model_type is not None:
        spec = preset(model_type)
    elif embedded is not None:
        spec = embedded
    else:
        spec = spec_from_shapes(shapes)
    spec.validate()  # before check_shapes builds the model (on the meta device)
    check_shapes(spec, shapes)
    return spec


def check_shapes(spec: ModelSpec, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise :class:`ModelTypeError` listing the tensors that do not fit ``spec``."""
    ref = {k: tuple(v.shape) for k, v in build_sam_meta(spec).state_dict().items()}
    missing = sorted(set(ref) - set(shapes))
    wrong = [f"{k} {shapes[k]} != {ref[k]}" for k in sorted(set(ref) & set(shapes)) if shapes[k] != ref[k]]
    if missing or wrong:
        detail = "; ".join(wrong[:3] + [f"missing {k}" for k in missing[:3]])
        more = len(wrong) + len(missing) - min(3, len(wrong)) - min(3, len(missing))
        raise ModelTypeError(
            f"weights do not match model type {spec.model_type!r}: {detail}"
            + (f" (+{more} more)" if more > 0 else "")
            + "; omit --model-type to detect the type from the weights"
        )


def build_sam_meta(spec: ModelSpec) -> torch.nn.Module:
    with torch.device("meta"):
        return build_sam(spec, device="meta")


def load_model(
    path: Path | str,
    *,
    model_type: str | None = None,
    trust_pickle: bool = False,
    spec: ModelSpec | None = None,
) -> tuple[torch.nn.Module, ModelSpec]:
    """Load any supported checkpoint into a ``Sam`` model in eval mode.

    Arguments:
        path: checkpoint file (.pth / .safetensors) or a Hugging Face SamModel folder.
        model_type: force a preset (``vit_b``, ``vit_p77``, ``sam_mini``, ...).
        trust_pickle: allow unpickling whole model objects (runs code from the file).
        spec: an explicit architecture spec (overrides detection).
    """
    sd, embedded = read_state_dict(path, trust_pickle=trust_pickle)
    spec = resolve_spec(sd, spec or embedded, model_type)
    model = build_sam(spec)
    extra = sorted(set(sd) - set(model.state_dict()))
    if extra:
        raise ModelTypeError(
            f"{path}: {len(extra)} tensors are not part of a {spec.model_type} model "
            f"(e.g. {extra[0]}); is this checkpoint of another model family?"
        )
    model.load_state_dict(sd, strict=True)
    return model.eval(), spec


def save_model(model: torch.nn.Module, spec: ModelSpec, out: Path | str, **meta: str) -> Path:
    """Write ``model``'s weights + spec as one safetensors file, atomically."""
    from safetensors.torch import save_file

    out = Path(out)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {SPEC_METADATA_KEY: spec.to_json(), "format": "pt", **meta}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return out


def load_spec_file(path: Path | str) -> ModelSpec:
    """Read a spec JSON file (at most :data:`~slimsam_edge.limits.MAX_SPEC_BYTES`, UTF-8).

    Raises:
        CheckpointError: the file cannot be read; SpecError: it is not a valid spec (one line).
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read spec ({err.strerror})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: more than {MAX_SPEC_BYTES} bytes (limits.MAX_SPEC_BYTES); is it a spec "
                        "JSON written by slimsam-edge?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text; pass a spec JSON written by slimsam-edge") from None
    return name_spec(ModelSpec.from_json(text))


def dumps_spec(spec: ModelSpec) -> str:
    return json.dumps(spec.to_dict(), indent=2)
