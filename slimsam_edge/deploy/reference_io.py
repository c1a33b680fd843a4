"""Reference I/O every bundle carries: a few graph inputs with their fp32 outputs, in one npz.

Export computes them with the PyTorch model (the fp32 truth) and hashes the file into the
manifest (``Manifest.files``; the entry in ``Manifest.reference``). ``slimsam-edge verify`` and
``slimsam-edge build`` run them through a runtime on the device and compare
(:mod:`slimsam_edge.deploy.verify`). Torch-free.

The cases:

- encoder graphs (a single ``image`` input): preprocessed images, exactly the normalised, padded
  1x3xSxS tensor the encoder takes (two procedural photos of different aspect ratios);
- decoder graphs (an ``image_embeddings`` input): prompts on the reference embedding of each
  image -- one foreground point with SAM's pad point, a foreground and a background point with
  the pad point, a box -- in the model's coordinate frame. The embedding is stored once, with the
  encoder case (``embedding_from``), which is also what the end-to-end check feeds a candidate
  encoder's output into.

File layout (``np.savez_compressed``, loaded with ``allow_pickle=False``): one array per tensor
under ``"<graph>/<case>/in/<name>"`` and ``"<graph>/<case>/out/<name>"``, plus ``"__index__"``,
a JSON string listing the cases (graph, name, description, input and output names,
``embedding_from``). A decoder input that comes from an encoder case is not stored twice.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> enc = ReferenceCase("image_encoder", {"image": np.ones((1, 3, 4, 4), np.float32)},
    ...                     {"image_embeddings": np.ones((1, 2, 1, 1), np.float32)}, name="0")
    >>> dec = ReferenceCase("mask_decoder_lowres",
    ...                     {"image_embeddings": enc.outputs["image_embeddings"]},
    ...                     {"low_res_masks": np.zeros((1, 4, 4, 4), np.float32)},
    ...                     name="point", embedding_from="image_encoder/0")
    >>> entry, files = write_reference(root, [enc, dec])
    >>> entry["cases"], list(files) == [REFERENCE_FILE]
    ({'image_encoder': 1, 'mask_decoder_lowres': 1}, True)
    >>> [c.key for c in read_reference(root / REFERENCE_FILE)]
    ['image_encoder/0', 'mask_decoder_lowres/point']
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import BundleError
from ..fsutil import atomic_path, sha256_file
from ..models.graph_spec import FeedDict

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle import Bundle

#: where export writes the reference I/O, relative to the bundle
REFERENCE_FILE = "reference/io.npz"
#: version of the npz layout (``__index__["format"]``)
FORMAT = 1
#: an npz whose arrays declare more than this many bytes in total is refused before loading
MAX_REFERENCE_BYTES = 512 * 2**20
#: the npz key of the JSON index
INDEX_KEY = "__index__"
#: the input of an encoder graph that takes a preprocessed image; the embedding decoders take
IMAGE_INPUT, EMBEDDING = "image", "image_embeddings"
#: the input of an encoder with preprocessing in the graph: HxWx3 float pixels, long side resized
PIXELS_INPUT = "input_image"

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_RE_EXPORT = "re-export the bundle"


@dataclass
class ReferenceCase:
    """One graph's inputs and its fp32 outputs.

    Arguments:
        graph: the graph name (:mod:`slimsam_edge.models.graph_spec`).
        inputs / outputs: tensors by name (outputs computed by the PyTorch model at export).
        name: the case's name within its graph ("0", "point", "box"); ``write_reference``
            numbers unnamed cases.
        description: the image or the prompt, in words (recorded in the manifest).
        embedding_from: ``"<encoder graph>/<case>"`` when ``inputs["image_embeddings"]`` is that
            encoder case's output (stored once; the end-to-end check feeds a candidate encoder's
            output here instead).
    """

    graph: str
    inputs: FeedDict
    outputs: FeedDict
    name: str = ""
    description: str = ""
    embedding_from: str | None = None

    @property
    def key(self) -> str:
        """``"<graph>/<name>"``, unique within a reference file."""
        return f"{self.graph}/{self.name}"


def write_reference(root: Path | str, cases: Sequence[ReferenceCase]) -> tuple[dict[str, Any], dict[str, str]]:
    """Write ``cases`` to ``root / REFERENCE_FILE`` atomically.

    Returns ``(reference_entry, files)``: the manifest's ``reference`` entry (path, format,
    number of cases per graph, the description of each case) and ``{REFERENCE_FILE: sha256}``
    for ``Manifest.files``.

    Raises:
        ValueError: two cases of one name, a name with characters other than ``[A-Za-z0-9_.-]``,
            or an ``embedding_from`` that names no case or differs from its output (a bug of
            the caller, not of the user).
    """
    named = _named(cases)
    by_key = {c.key: c for c in named}
    arrays: dict[str, np.ndarray] = {}
    index = []
    for case in named:
        linked = _linked_input(case, by_key)
        for name, value in case.inputs.items():
            if name != linked:
                arrays[f"{case.key}/in/{name}"] = np.ascontiguousarray(value)
        for name, value in case.outputs.items():
            arrays[f"{case.key}/out/{name}"] = np.ascontiguousarray(value)
        index.append({"graph": case.graph, "name": case.name, "description": case.description,
                      "inputs": list(case.inputs), "outputs": list(case.outputs),
                      "embedding_from": case.embedding_from})
    arrays[INDEX_KEY] = np.array(json.dumps({"format": FORMAT, "cases": index}))
    dest = Path(root) / REFERENCE_FILE
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
    counts: dict[str, int] = {}
    for case in named:
        counts[case.graph] = counts.get(case.graph, 0) + 1
    entry = {"path": REFERENCE_FILE, "format": FORMAT, "cases": counts,
             "descriptions": {c.key: c.description for c in named}}
    return entry, {REFERENCE_FILE: sha256_file(dest)}


def _named(cases: Sequence[ReferenceCase]) -> list[ReferenceCase]:
    out: list[ReferenceCase] = []
    seen: set[str] = set()
    for case in cases:
        if not case.name:
            number = sum(1 for c in out if c.graph == case.graph)
            case = ReferenceCase(case.graph, case.inputs, case.outputs, str(number), case.description,
                                 case.embedding_from)
        if not _NAME.match(case.name) or not _NAME.match(case.graph):
            raise ValueError(f"reference case {case.key!r}: graph and case names must match {_NAME.pattern}")
        if case.key in seen:
            raise ValueError(f"two reference cases named {case.key!r}")
        seen.add(case.key)
        out.append(case)
    return out


def _linked_input(case: ReferenceCase, by_key: dict[str, ReferenceCase]) -> str | None:
    """The input stored with ``case.embedding_from`` instead of with ``case`` (checked equal)."""
    if case.embedding_from is None:
        return None
    source = by_key.get(case.embedding_from)
    if source is None or EMBEDDING not in source.outputs or EMBEDDING not in case.inputs:
        raise ValueError(f"reference case {case.key}: embedding_from {case.embedding_from!r} names no "
                         f"case with an {EMBEDDING} output")
    if not np.array_equal(source.outputs[EMBEDDING], case.inputs[EMBEDDING]):
        raise ValueError(f"reference case {case.key}: its {EMBEDDING} differ from {case.embedding_from}'s output")
    return EMBEDDING


def load_reference(bundle: "Bundle | Path | str") -> list[ReferenceCase]:
    """The reference cases of a bundle (its hashes are checked when a path is given).

    Raises:
        BundleError: the bundle has no reference I/O (exported before it existed), or the file is
            missing, too large, not an npz, or lacks a key its index names; one line naming the
            file and saying to re-export.

    Illustration (not run as a doctest: it needs files or a model)::

        cases = load_reference("bundle/")
        [c.key for c in cases][:2]
        # -> ['image_encoder/0', 'image_encoder/1']
    """
    from ..bundle import Bundle, load_bundle

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    entry = b.manifest.reference
    if not entry or not isinstance(entry.get("path"), str):
        raise BundleError(f"bundle {b.root}: no reference I/O in its manifest (exported before bundles "
                          f"carried it); {_RE_EXPORT} to verify it")
    where = f"bundle {b.root}: reference file {entry['path']}"
    return _cases_from(load_npz(b.read(entry["path"]), where), where)  # bytes hashed as they are read


def read_reference(path: Path | str, *, where: str | None = None) -> list[ReferenceCase]:
    """Read a reference npz written by :func:`write_reference` (see :func:`load_reference`)."""
    where = where or f"reference file {path}"
    return _cases_from(load_npz(path, where), where)


#: what reading a hostile or damaged npz raises (zip features zipfile lacks: NotImplementedError,
#: encrypted members: RuntimeError)
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError, RuntimeError)


def load_npz(path: Path | str | bytes, where: str) -> dict[str, np.ndarray]:
    """Every array of the npz at ``path`` (or in the bytes of one, e.g. a bundle file read by
    :meth:`~slimsam_edge.bundle.Bundle.read`), read with ``allow_pickle=False`` after its headers
    declared at most :data:`MAX_REFERENCE_BYTES` in all (bounded memory).

    Raises:
        BundleError: missing, too large or unreadable; one line starting with ``where`` and
            saying to re-export.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
        >>> np.savez(path, x=np.arange(3))
        >>> load_npz(path, "calibration file a.npz")["x"].tolist()
        [0, 1, 2]
    """
    if isinstance(path, bytes):
        source: Any = io.BytesIO(path)
    elif not Path(path).is_file():
        raise BundleError(f"{where} is missing; {_RE_EXPORT}")
    else:
        source = Path(path)
    total = _declared_bytes(source, where)
    if total > MAX_REFERENCE_BYTES:
        raise BundleError(f"{where}: its arrays declare {total / 2**20:.0f} MiB (more than "
                          f"{MAX_REFERENCE_BYTES // 2**20} MiB); refused; {_RE_EXPORT}")
    try:
        if isinstance(source, io.BytesIO):
            source.seek(0)
        with np.load(source, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except _NPZ_ERRORS as err:
        raise BundleError(f"{where} is not a readable npz ({_short(err)}); {_RE_EXPORT}") from None


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:120] or type(err).__name__


def _declared_bytes(path: Path | io.BytesIO, where: str) -> int:
    """Sum of the array sizes the npz members declare in their headers (nothing loaded)."""
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _order, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _order, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"npy format {version} of {info.filename}")
                total += int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    except _NPZ_ERRORS as err:
        raise BundleError(f"{where} is not a readable npz ({_short(err)}); {_RE_EXPORT}") from None
    return total


def _cases_from(data: dict[str, np.ndarray], where: str) -> list[ReferenceCase]:
    bad = f"{where} is malformed"
    try:
        index = json.loads(str(data[INDEX_KEY][()]))
        entries = index["cases"]
        if index.get("format") != FORMAT or not isinstance(entries, list):
            raise ValueError(f"format {index.get('format')!r}")
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as err:
        raise BundleError(f"{bad} (no valid {INDEX_KEY}: {_short(err)}); {_RE_EXPORT}") from None
    cases: list[ReferenceCase] = []
    by_key: dict[str, ReferenceCase] = {}
    for i, e in enumerate(entries):
        try:
            case = ReferenceCase(str(e["graph"]), {}, {}, str(e["name"]), str(e.get("description", "")),
                                 e.get("embedding_from"))
            for name in e["outputs"]:
                case.outputs[name] = data[f"{case.key}/out/{name}"]
            for name in e["inputs"]:
                if name == EMBEDDING and case.embedding_from is not None:
                    case.inputs[name] = by_key[case.embedding_from].outputs[EMBEDDING]
                else:
                    case.inputs[name] = data[f"{case.key}/in/{name}"]
        except (KeyError, TypeError) as err:
            raise BundleError(f"{bad} (case {i}: missing key {_short(err)}); {_RE_EXPORT}") from None
        cases.append(case)
        by_key[case.key] = case
    return cases


# --------------------------------------------------------------------------- making the cases
#: ``run(graph, feed) -> outputs``: the fp32 truth (export passes the PyTorch model's wrappers)
RunGraph = Callable[[str, FeedDict], FeedDict]


def reference_images(count: int = 2) -> list[tuple[str, np.ndarray, list[np.ndarray]]]:
    """``count`` small procedural photos (landscape, then portrait) with their object masks.

    Example:
        >>> [(name, img.shape) for name, img, _ in reference_images(2)]
        [('procedural seed 11, 192x256', (192, 256, 3)), ('procedural seed 12, 256x160', (256, 160, 3))]
    """
    from ..data.procedural import generate_sample

    sizes = [(192, 256), (256, 160)]
    out = []
    for i in range(count):
        seed, hw = 11 + i, sizes[i % len(sizes)]
        image, masks = generate_sample(seed, hw)
        out.append((f"procedural seed {seed}, {hw[0]}x{hw[1]}", image, masks))
    return out


def prompts_for(masks: list[np.ndarray], hw: tuple[int, int]) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """Three prompts on an image, in its pixel frame: ``(name, description, coords Nx2, labels N)``.

    A foreground point inside the largest object (with SAM's pad point), that point and a
    background point outside it (with the pad point), and the object's box (no pad point).

    Example:
        >>> m = np.zeros((8, 10), bool); m[2:6, 3:9] = True
        >>> [(n, c.tolist(), l.tolist()) for n, _, c, l in prompts_for([m], (8, 10))][2]
        ('box', [[3.0, 2.0], [9.0, 6.0]], [2.0, 3.0])
    """
    h, w = hw
    largest = max(masks, key=np.count_nonzero) if masks else np.ones(hw, bool)
    ys, xs = np.nonzero(largest)
    k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    fg = np.array([xs[k] + 0.5, ys[k] + 0.5])
    oy, ox = np.nonzero(~largest)
    bg = np.array([ox[0] + 0.5, oy[0] + 0.5]) if oy.size else np.array([0.0, 0.0])
    box = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], np.float64)
    pad, pad_label = np.zeros((1, 2)), np.array([-1.0])
    return [
        ("point", f"foreground point ({fg[0]:g}, {fg[1]:g}) + pad point",
         np.concatenate([fg[None], pad]), np.concatenate([[1.0], pad_label])),
        ("points", f"foreground ({fg[0]:g}, {fg[1]:g}) and background ({bg[0]:g}, {bg[1]:g}) points + pad point",
         np.concatenate([fg[None], bg[None], pad]), np.concatenate([[1.0, 0.0], pad_label])),
        ("box", f"box ({box[0, 0]:g}, {box[0, 1]:g}, {box[1, 0]:g}, {box[1, 1]:g})", box, np.array([2.0, 3.0])),
    ]


def decoder_feed(input_names: Iterable[str], embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray,
                 hw: tuple[int, int], image_size: int) -> FeedDict:
    """A decoder graph's feed: the prompt moved into the model's frame, no mask input.

    Raises:
        KeyError: the graph takes an input this function does not know how to make.

    Example:
        >>> f = decoder_feed(["point_coords", "orig_im_size"], np.zeros((1, 8, 4, 4), np.float32),
        ...                  np.array([[10.0, 5.0]]), np.array([1.0]), (20, 40), 64)
        >>> f["point_coords"].tolist(), f["orig_im_size"].tolist()
        ([[[16.0, 8.0]]], [20.0, 40.0])
    """
    from ..transforms import ResizeLongestSide

    low = 4 * embedding.shape[-1]
    makers: dict[str, Callable[[], np.ndarray]] = {
        EMBEDDING: lambda: embedding,
        "point_coords": lambda: ResizeLongestSide(image_size).apply_coords(coords, hw)[None].astype(np.float32),
        "point_labels": lambda: labels[None].astype(np.float32),
        "mask_input": lambda: np.zeros((1, 1, low, low), np.float32),
        "has_mask_input": lambda: np.zeros(1, np.float32),
        "orig_im_size": lambda: np.array(hw, np.float32),
    }
    return {name: makers[name]() for name in input_names}


def reference_cases(graphs: Iterable[str], run: RunGraph, *, image_size: int, pixel_mean: Sequence[float],
                    pixel_std: Sequence[float], images: int = 2) -> tuple[list[ReferenceCase], list[str]]:
    """The reference cases of ``graphs`` with outputs from ``run``; returns ``(cases, notes)``.

    Encoder-like graphs (inputs: ``image`` only) get ``images`` preprocessed images (an
    ``input_image``-only graph, preprocessing in the graph, gets the same images resized); decoder-like
    graphs (an ``image_embeddings`` input) get :func:`prompts_for` on each image, fed its reference
    embedding (case ``"<image>-<prompt>"``). A graph of another kind is skipped, with a note.

    Example:
        >>> def run(graph, feed):  # a stand-in for the PyTorch model
        ...     if graph == "image_encoder":
        ...         return {"image_embeddings": feed["image"][:, :2, ::16, ::16].copy()}
        ...     return {"low_res_masks": np.zeros((1, 4, 16, 16), np.float32)}
        >>> cases, notes = reference_cases(["image_encoder", "mask_decoder_lowres"], run, image_size=64,
        ...                                pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))
        >>> [c.key for c in cases][1:4], len(cases), notes
        (['image_encoder/1', 'mask_decoder_lowres/0-point', 'mask_decoder_lowres/0-points'], 9, [])
    """
    from ..models.graph_spec import ENCODER, ONNX_SPECS
    from ..transforms import ResizeLongestSide, normalize_and_pad

    graphs = list(graphs)
    shots = reference_images(images)
    inputs = {  # what each kind of encoder input is made of, from the runtime's resized image
        IMAGE_INPUT: lambda resized: normalize_and_pad(resized, image_size, tuple(pixel_mean), tuple(pixel_std)),
        PIXELS_INPUT: lambda resized: resized.astype(np.float32),
    }
    encoders = [g for g in graphs if len(ONNX_SPECS[g].inputs) == 1 and next(iter(ONNX_SPECS[g].inputs)) in inputs]
    plain = [g for g in encoders if list(ONNX_SPECS[g].inputs) == [IMAGE_INPUT]]
    source = ENCODER if ENCODER in plain else (plain[0] if plain else None)
    cases: list[ReferenceCase] = []
    notes: list[str] = []
    for graph in encoders:
        name = next(iter(ONNX_SPECS[graph].inputs))
        for i, (image_id, image, _masks) in enumerate(shots):
            feed = {name: inputs[name](ResizeLongestSide(image_size).apply_image(np.ascontiguousarray(image)))}
            cases.append(ReferenceCase(graph, feed, run(graph, feed), str(i), image_id))
    for graph in graphs:
        names = list(ONNX_SPECS[graph].inputs)
        if graph in encoders:
            continue
        if EMBEDDING not in names or source is None:
            notes.append(f"reference I/O: no cases for graph {graph} (inputs {', '.join(names)})")
            continue
        try:
            cases += _prompt_cases(graph, names, [c for c in cases if c.graph == source], shots, image_size, run)
        except KeyError as err:
            notes.append(f"reference I/O: no cases for graph {graph} (input {err} unknown)")
    return cases, notes


def _prompt_cases(graph: str, names: list[str], encoded: list[ReferenceCase], shots: list, image_size: int,
                  run: RunGraph) -> list[ReferenceCase]:
    """:func:`prompts_for` on each reference image, fed its reference embedding; a decoder with a
    prompt axis also gets them as one batch on the first image (:func:`batch_case`)."""
    from ..models.graph_spec import has_prompt_axis

    out = []
    for k, (enc, (image_id, image, masks)) in enumerate(zip(encoded, shots)):
        hw = image.shape[:2]
        prompts = prompts_for(masks, hw)
        for name, description, coords, labels in prompts:
            feed = decoder_feed(names, enc.outputs[EMBEDDING], coords, labels, hw, image_size)
            out.append(ReferenceCase(graph, feed, run(graph, feed), f"{enc.name}-{name}",
                                     f"{description} on {image_id}", embedding_from=enc.key))
        if k == 0 and has_prompt_axis(graph):
            first = out[-len(prompts)]  # its single-mask logits are the mask input of the last prompt
            feed = batch_feed(names, enc.outputs[EMBEDDING], prompts, hw, image_size,
                              first.outputs["low_res_masks"][0, :1])
            out.append(ReferenceCase(graph, feed, run(graph, feed), f"{enc.name}-batch",
                                     f"{len(prompts)} prompts in one call ({', '.join(p[0] for p in prompts)}; "
                                     f"labels -1 pad the shorter ones; mask_input on the last) on {image_id}",
                                     embedding_from=enc.key))
    return out


def batch_feed(input_names: Iterable[str], embedding: np.ndarray, prompts: list[tuple[str, str, np.ndarray, np.ndarray]],
               hw: tuple[int, int], image_size: int, last_mask: np.ndarray) -> FeedDict:
    """A batched decoder's feed of B = ``len(prompts)`` prompts (:func:`prompts_for`) against one
    embedding: points padded with label -1 to the longest prompt; the last prompt also gets
    ``last_mask`` (1xLxL logits) as its mask input (``has_mask_input`` 0, ..., 0, 1), so the
    per-prompt mask flag is checked too.

    Example:
        >>> m = np.zeros((8, 10), bool); m[2:6, 3:9] = True
        >>> f = batch_feed(["point_coords", "point_labels", "has_mask_input"], np.zeros((1, 8, 4, 4), np.float32),
        ...                prompts_for([m], (8, 10)), (8, 10), 64, np.zeros((1, 16, 16), np.float32))
        >>> f["point_coords"].shape, f["point_labels"].tolist(), f["has_mask_input"].tolist()
        ((3, 3, 2), [[1.0, -1.0, -1.0], [1.0, 0.0, -1.0], [2.0, 3.0, -1.0]], [0.0, 0.0, 1.0])
    """
    n = max(len(labels) for _, _, _, labels in prompts)
    coords = np.zeros((len(prompts), n, 2))
    labels = -np.ones((len(prompts), n))
    for i, (_, _, c, lab) in enumerate(prompts):
        coords[i, : len(lab)], labels[i, : len(lab)] = c, lab
    single = decoder_feed(input_names, embedding, coords.reshape(-1, 2), labels.reshape(-1), hw, image_size)
    b = len(prompts)
    low = 4 * embedding.shape[-1]
    mask = np.zeros((b, 1, low, low), np.float32)
    mask[-1] = last_mask
    batched = {"point_coords": lambda: single["point_coords"].reshape(b, n, 2),
               "point_labels": lambda: single["point_labels"].reshape(b, n),
               "mask_input": lambda: mask, "has_mask_input": lambda: (np.arange(b) == b - 1).astype(np.float32)}
    return {name: batched[name]() if name in batched else single[name] for name in input_names}
