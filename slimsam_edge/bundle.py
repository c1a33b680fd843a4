"""The bundle: a folder with ``manifest.json`` and the exported artifacts, each with its sha256.

A bundle is what an edge device receives. The manifest says which model it is, how images are
normalised, and which graph (encoder / decoder) exists for which backend and precision. Loading
verifies every file's hash, so a truncated copy or a hand-edited graph is refused with a
one-line :class:`~slimsam_edge.errors.BundleError` instead of producing wrong masks. Torch-free.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "decoder.onnx").write_bytes(b"onnx bytes")
    >>> art = Artifact.from_files(root, "mask_decoder", "onnxruntime", "fp32", "decoder.onnx")
    >>> m = Manifest(model={"id": "demo", "type": "vit_t", "spec": {}}, target="cpu", artifacts=[art])
    >>> _ = write_manifest(root, m)
    >>> load_bundle(root).find("mask_decoder").path
    'decoder.onnx'
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from . import manifest_schema as schema
from .devices.profile import PRECISIONS
from .errors import BundleError
from .fsutil import HashedFiles, read_inside, read_verified, sha256_file, sha256_inside, write_text_atomic

MANIFEST = "manifest.json"
#: the largest manifest.json read (an export writes ~10 KB); larger is refused before reading
MAX_MANIFEST_BYTES = 16 * 2**20
SCHEMA_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RE_EXPORT = schema.RE_EXPORT


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_relative(path: str, where: str) -> str:
    """Refuse absolute paths and paths that climb out of the bundle."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise BundleError(f"{where}: path {path!r} must be relative to the bundle folder; {_RE_EXPORT}")
    return pure.as_posix()


@dataclass
class Artifact:
    """One exported graph file (plus its companions) for one backend and precision.

    Arguments:
        graph: "image_encoder", "mask_decoder", ...
        backend: "onnxruntime", "openvino", "tensorrt" or "torch".
        precision: "fp32", "fp16", "bf16", "int8".
        path: the file a runner opens, relative to the bundle (posix separators).
        files: every file the artifact needs (``path`` included) -> sha256.
        extra: backend facts, e.g. ``{"tensorrt_version": "10.3.0"}`` or the decoder variant.
    """

    graph: str
    backend: str
    precision: str
    path: str
    files: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_files(
        cls,
        bundle_dir: Path | str,
        graph: str,
        backend: str,
        precision: str,
        path: str,
        other_files: Iterable[str] = (),
        extra: dict[str, Any] | None = None,
    ) -> "Artifact":
        """Describe files already written into ``bundle_dir``, hashing each of them.

        Illustration (not run as a doctest: it needs files or a model)::

            Artifact.from_files("bundle", "image_encoder", "openvino", "bf16",
                                "encoder.xml", other_files=["encoder.bin"])
        """
        root = Path(bundle_dir)
        rels = [_check_relative(Path(p).as_posix(), f"artifact {graph}") for p in (path, *other_files)]
        files: dict[str, str] = {}
        for rel in rels:
            if not (root / rel).is_file():
                raise BundleError(f"bundle {root}: file {rel} does not exist; write it before describing it")
            files[rel] = sha256_file(root / rel)
        return cls(graph, backend, precision, rels[0], files, dict(extra or {}))

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Artifact":
        """Validate one manifest entry (raises BundleError naming the bad key)."""
        if not isinstance(data, dict):
            raise BundleError(f"{where}: must be an object; {_RE_EXPORT}")
        for key in ("graph", "backend", "precision", "path"):
            _require(data, key, str, where)
        files = _require(data, "files", dict, where)
        for rel, digest in files.items():
            _check_relative(rel, where)
            if not isinstance(digest, str) or not _SHA256.match(digest):
                raise BundleError(f"{where}: files[{rel!r}] is not a sha256 hex digest; {_RE_EXPORT}")
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            raise BundleError(f"{where}: key 'extra' must be an object; {_RE_EXPORT}")
        path = _check_relative(data["path"], where)
        if path not in files:
            raise BundleError(f"{where}: its path {path!r} is not listed in its files; {_RE_EXPORT}")
        return cls(data["graph"], data["backend"], data["precision"], path, dict(files), dict(extra))

    def precision_hint(self, where: str = "") -> str | None:
        """``extra["precision_hint"]`` (the precision a runner computes an fp32 file in), validated.

        Example:
            >>> Artifact("e", "openvino", "bf16", "e.xml", extra={"precision_hint": "bf16"}).precision_hint()
            'bf16'
        """
        hint = self.extra.get("precision_hint")
        if hint is not None and hint not in PRECISIONS:
            raise BundleError(f"{where + ': ' if where else ''}artifact {self.graph}/{self.backend}/{self.precision}: "
                              f"extra.precision_hint {hint!r} is not one of {', '.join(PRECISIONS)}; {_RE_EXPORT}")
        return hint


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list"}


def _require(data: dict[str, Any], key: str, typ: type, where: str, *, optional: Any = ...) -> Any:
    """Return ``data[key]`` if present and of type ``typ`` (ints count as floats, bools never)."""
    if key not in data:
        if optional is not ...:
            return optional
        raise BundleError(f"{where}: missing key {key!r}; {_RE_EXPORT}")
    value = data[key]
    types: tuple[type, ...] = (int, float) if typ is float else (typ,)
    if isinstance(value, bool) or not isinstance(value, types):
        raise BundleError(f"{where}: key {key!r} must be {_TYPE_NAMES.get(typ, typ.__name__)}; {_RE_EXPORT}")
    return value


def _floats(data: dict[str, Any], key: str, where: str, n: int, bounds: tuple[float, float]) -> list[float]:
    values = _require(data, key, list, where)
    if len(values) != n:
        raise BundleError(f"{where}: key {key!r} must be a list of {n} numbers; {_RE_EXPORT}")
    return [schema.number_in(v, bounds, key, where) for v in values]


@dataclass
class Manifest:
    """Everything a runtime needs to know about a bundle (stored as ``manifest.json``).

    Example:
        >>> m = Manifest(model={"id": "x", "type": "vit_b", "spec": {}}, target="cpu")
        >>> Manifest.from_json(m.to_json()).target
        'cpu'
    """

    model: dict[str, Any]
    target: str
    artifacts: list[Artifact] = field(default_factory=list)
    image_size: int = 1024
    pixel_mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    pixel_std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    mask_threshold: float = 0.0
    tool_versions: dict[str, str] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=_utc_now)
    notes: list[str] = field(default_factory=list)
    #: backends in the target's order of preference, written by export (validated on load)
    backend_preference: list[str] = field(default_factory=list)
    #: hashed files that are not graphs (reference I/O, calibration inputs): relative path -> sha256
    files: dict[str, str] = field(default_factory=dict)
    #: the reference I/O every bundle carries (``slimsam-edge verify``): {"path": rel, ...}; the
    #: path is one of ``files``; the other keys belong to :mod:`slimsam_edge.deploy.reference_io`
    reference: dict[str, Any] = field(default_factory=dict)
    #: engines a device builds itself (``slimsam-edge build``): backend -> its plan (settings,
    #: source ONNX per graph and precision, calibration inputs); every path it names is hashed
    build_plan: dict[str, Any] = field(default_factory=dict)
    #: how prompts are given to the decoder graphs (coordinate frame, mask_input size), for
    #: clients written for SAM's official ONNX files
    prompt_frame: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """Serialise to indented JSON (``schema_version`` first). A number that is not finite (a
        NaN agreement of a check that measured nothing) is written as ``null``: JSON has no NaN,
        and a manifest holding one would not load.

        Example:
            >>> '"schema_version": 1' in Manifest(model={"id": "x", "type": "t"}, target="cpu").to_json()
            True
            >>> '"iou": null' in Manifest(model={}, target="cpu", accuracy={"iou": float("nan")}).to_json()
            True
        """
        data = asdict(self)
        ordered = {"schema_version": data.pop("schema_version"), **data}
        return json.dumps(schema.finite_or_null(ordered), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST) -> "Manifest":
        """Parse and validate manifest JSON; any problem is a one-line BundleError.

        Example:
            >>> Manifest.from_json('{"schema_version": 1}')
            Traceback (most recent call last):
            ...
            slimsam_edge.errors.BundleError: manifest.json: missing key 'model'; re-export the bundle
        """
        return cls.from_dict(schema.parse_json(text, source), source)

    @classmethod
    def from_dict(cls, data: Any, source: str = MANIFEST) -> "Manifest":
        """Validate an already-parsed manifest (see :meth:`from_json`)."""
        if not isinstance(data, dict):
            raise BundleError(f"{source}: must hold a JSON object; {_RE_EXPORT}")
        version = _require(data, "schema_version", int, source)
        if version > SCHEMA_VERSION:
            raise BundleError(
                f"{source}: schema_version {version} is newer than this slimsam-edge understands "
                f"({SCHEMA_VERSION}); upgrade slimsam-edge (pip install -U slimsam-edge)"
            )
        if version < 1:
            raise BundleError(f"{source}: schema_version {version} is invalid; {_RE_EXPORT}")
        model = _require(data, "model", dict, source)
        for key in ("id", "type"):
            _require(model, key, str, f"{source}: model")
        _require(model, "spec", dict, f"{source}: model", optional={})
        image_size = schema.image_size(_require(data, "image_size", int, source), source)
        entries = _require(data, "artifacts", list, source)
        notes = _require(data, "notes", list, source, optional=[])
        if not all(isinstance(n, str) for n in notes):
            raise BundleError(f"{source}: key 'notes' must be a list of strings; {_RE_EXPORT}")
        artifacts = [Artifact.from_dict(a, f"{source}: artifacts[{i}]") for i, a in enumerate(entries)]
        files = _hashes(_require(data, "files", dict, source, optional={}), f"{source}: files")
        hashed = set(files).union(*(a.files for a in artifacts))
        reference = dict(_require(data, "reference", dict, source, optional={}))
        if reference:
            _hashed_path(reference, "path", hashed, f"{source}: reference")
        build_plan = _build_plan(_require(data, "build_plan", dict, source, optional={}), hashed, source)
        return cls(
            schema_version=version,
            model=dict(model),
            image_size=image_size,
            pixel_mean=_floats(data, "pixel_mean", source, 3, schema.PIXEL_MEAN_RANGE),
            pixel_std=_floats(data, "pixel_std", source, 3, schema.PIXEL_STD_RANGE),
            mask_threshold=schema.number_in(_require(data, "mask_threshold", float, source),
                                            schema.MASK_THRESHOLD_RANGE, "mask_threshold", source),
            target=_require(data, "target", str, source),
            artifacts=artifacts,
            tool_versions=dict(_require(data, "tool_versions", dict, source, optional={})),
            validation=dict(_require(data, "validation", dict, source, optional={})),
            accuracy=dict(_require(data, "accuracy", dict, source, optional={})),
            created=_require(data, "created", str, source, optional=""),
            notes=list(notes),
            backend_preference=_preference(data, source, artifacts, build_plan),
            files=files,
            reference=reference,
            build_plan=build_plan,
            prompt_frame=dict(_require(data, "prompt_frame", dict, source, optional={})),
        )


def write_manifest(bundle_dir: Path | str, manifest: Manifest) -> Path:
    """Write ``manifest.json`` into ``bundle_dir`` atomically and return its path.

    Illustration (not run as a doctest: it needs files or a model)::

        write_manifest("bundle", manifest)
        # -> PosixPath('bundle/manifest.json')
    """
    return write_text_atomic(Path(bundle_dir) / MANIFEST, manifest.to_json())


@dataclass
class Bundle:
    """A loaded bundle: its folder and its manifest.

    Illustration (not run as a doctest: it needs files or a model)::

        b = load_bundle("bundle")
        b.path_of(b.find("image_encoder", backend="openvino"))
        # -> PosixPath('bundle/image_encoder.xml')
    """

    root: Path
    manifest: Manifest

    def backends(self) -> list[str]:
        """Backends with at least one artifact, in the target's preference order.

        The order is the manifest's ``backend_preference`` (written by export), else the shipped
        profile of its ``target``, else the order of the artifacts; backends it does not name
        follow in artifact order.
        """
        listed = list(dict.fromkeys(a.backend for a in self.manifest.artifacts))
        order = self.manifest.backend_preference or _profile_order(self.manifest.target)
        return [b for b in order if b in listed] + [b for b in listed if b not in order]

    def graphs(self) -> list[str]:
        """Names of the graphs in this bundle, in manifest order."""
        return list(dict.fromkeys(a.graph for a in self.manifest.artifacts))

    def summary(self) -> dict[str, Any]:
        """What ``slimsam-edge info BUNDLE`` shows: model, target, image size, artifacts, validation.

        Example:
            >>> import tempfile, pathlib
            >>> root = pathlib.Path(tempfile.mkdtemp())
            >>> _ = (root / "d.onnx").write_bytes(b"onnx bytes")
            >>> art = Artifact.from_files(root, "mask_decoder", "onnxruntime", "fp32", "d.onnx")
            >>> _ = write_manifest(root, Manifest(model={"id": "demo", "type": "vit_t", "spec": {}},
            ...                                   target="cpu", artifacts=[art]))
            >>> s = load_bundle(root).summary()
            >>> s["model"], s["artifacts"]
            ({'id': 'demo', 'type': 'vit_t'}, ['mask_decoder/onnxruntime/fp32: d.onnx'])
        """
        m = self.manifest
        return {
            "bundle": str(self.root), "model": {k: v for k, v in m.model.items() if k != "spec"},
            "target": m.target, "image_size": m.image_size,
            "artifacts": [f"{a.graph}/{a.backend}/{a.precision}: {a.path}" for a in m.artifacts],
            "validation": m.validation, "tool_versions": m.tool_versions,
        }

    def find(self, graph: str, backend: str | None = None, precision: str | None = None) -> Artifact:
        """The artifact for ``graph``; without ``backend`` the preferred backend present wins.

        Among several precisions (``precision=None``) the first listed in the manifest wins.

        Raises:
            BundleError: nothing matches; the message lists what the bundle holds.

        Illustration (not run as a doctest: it needs files or a model)::

            load_bundle("bundle").find("mask_decoder", backend="onnxruntime")
        """
        matches = [
            a for a in self.manifest.artifacts
            if a.graph == graph and backend in (None, a.backend) and precision in (None, a.precision)
        ]
        if not matches:
            have = ", ".join(f"{a.graph}/{a.backend}/{a.precision}" for a in self.manifest.artifacts) or "nothing"
            wanted = "/".join([graph, backend or "*", precision or "*"])
            raise BundleError(
                f"bundle {self.root}: no artifact {wanted}; it holds {have}; export that target or "
                "pick one of those"
            )
        rank = {b: i for i, b in enumerate(self.backends())}
        return sorted(matches, key=lambda a: rank[a.backend])[0]

    def path_of(self, artifact: Artifact) -> Path:
        """Absolute path of the file a runner opens for ``artifact`` (for messages: runners load
        :meth:`source` instead)."""
        return self.root / artifact.path

    def source(self, artifact: Artifact) -> HashedFiles:
        """What a runner of ``artifact`` loads: its files, read only as verified bytes (see
        :func:`artifact_source`)."""
        return artifact_source(self.root, artifact)

    def read(self, rel: str) -> bytes:
        """The bytes of ``rel``, a hashed file of the bundle, checked against its sha256 as they are
        read (reference I/O, calibration inputs): what the caller gets is what the manifest vouches
        for, whatever happened to the file since :func:`load_bundle`.

        Raises:
            BundleError: ``rel`` is not hashed by the manifest, or as :meth:`verify`.
        """
        hashed = self.hashed_files()
        if rel not in hashed:
            raise BundleError(f"bundle {self.root}: {rel} is not a hashed file of the bundle; {_RE_EXPORT}")
        return read_verified(self.root, rel, hashed[rel], f"bundle {self.root}")

    def copy_verified(self, rel: str, dest_dir: Path | str) -> Path:
        """Copy ``rel`` (a hashed file) and the hashed files beside it that extend its name (an ONNX
        graph's ``.data``) into ``dest_dir`` from verified bytes; return the copy of ``rel``. For a
        tool that only reads a path (TensorRT's ONNX parser): the folder it reads from holds
        nothing the manifest does not vouch for, and nothing that changes after the check.

        Example:
            >>> import tempfile, pathlib
            >>> root = pathlib.Path(tempfile.mkdtemp())
            >>> _ = (root / "d.onnx").write_bytes(b"onnx bytes")
            >>> art = Artifact.from_files(root, "mask_decoder", "onnxruntime", "fp32", "d.onnx")
            >>> _ = write_manifest(root, Manifest(model={"id": "d", "type": "t", "spec": {}}, target="cpu", artifacts=[art]))
            >>> load_bundle(root).copy_verified("d.onnx", root / "copy").read_bytes()
            b'onnx bytes'
        """
        folder, name = posixpath.split(rel)
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for other in self.hashed_files():
            o_folder, o_name = posixpath.split(other)
            if other == rel or (o_folder == folder and o_name.startswith(name + ".")):
                (dest / o_name).write_bytes(self.read(other))
        if not (dest / name).is_file():
            self.read(rel)  # not hashed: the one-line refusal
        return dest / name

    def hashed_files(self) -> dict[str, str]:
        """Every file the manifest vouches for (artifacts' files and ``files``) -> sha256."""
        out = dict(self.manifest.files)
        for art in self.manifest.artifacts:
            out.update(art.files)
        return out

    def verify(self) -> None:
        """Check that every listed file is a regular file of the bundle matching its sha256.

        Files are read without following symbolic links (none may sit below the bundle folder, see
        docs/bundle.md "Integrity"); FIFOs and devices are refused before they are read. This is the
        up-front check; runners hash again what they load (:meth:`source`).

        Raises:
            BundleError: one line naming the file: missing, a symbolic link (or under one), not a
                regular file, or modified.
        """
        for rel, digest in self.hashed_files().items():
            if sha256_inside(self.root, rel, f"bundle {self.root}") != digest:
                raise BundleError(
                    f"bundle {self.root}: file {rel} was modified or corrupted (sha256 mismatch); "
                    + _RE_EXPORT
                )


def artifact_source(root: Path | str, artifact: Artifact) -> HashedFiles:
    """The files of ``artifact`` in the bundle folder ``root`` as a runner loads them: each read
    once into memory, without following links, and checked against the manifest's sha256 at that
    moment (:class:`~slimsam_edge.fsutil.HashedFiles`); a file the artifact does not list (e.g.
    an ONNX graph's external data) is refused when the runtime asks for it.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "d.onnx").write_bytes(b"onnx bytes")
        >>> src = artifact_source(root, Artifact.from_files(root, "mask_decoder", "onnxruntime", "fp32", "d.onnx"))
        >>> src.read()
        b'onnx bytes'
        >>> _ = (root / "d.onnx").write_bytes(b"other bytes")
        >>> src.read()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.BundleError: bundle ...: file d.onnx was modified or corrupted (sha256 mismatch); re-export the bundle
    """
    return HashedFiles(Path(root), artifact.path, dict(artifact.files), f"bundle {root}")


def _hashes(files: dict[str, Any], where: str) -> dict[str, str]:
    """``{relative path: sha256}`` validated: relative paths inside the bundle, hex digests."""
    out = {}
    for rel, digest in files.items():
        _check_relative(rel, where)
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise BundleError(f"{where}[{rel!r}] is not a sha256 hex digest; {_RE_EXPORT}")
        out[rel] = digest
    return out


def _hashed_path(data: dict[str, Any], key: str, hashed: set[str], where: str) -> str:
    """``data[key]``: a relative path that the manifest hashes (else a one-line BundleError)."""
    rel = _check_relative(_require(data, key, str, where), where)
    if rel not in hashed:
        raise BundleError(f"{where}: {key} {rel!r} is not a hashed file of the bundle; {_RE_EXPORT}")
    return rel


def _build_plan(plan: dict[str, Any], hashed: set[str], source: str) -> dict[str, Any]:
    """Check the shape of ``build_plan`` and that every source path it names is hashed.

    Each backend's plan is ``{"settings": {...}, "graphs": {graph: {precision: path}},
    "calibration": {graph: path}}``; the values of ``settings`` are checked by the builder.
    """
    for backend, entry in plan.items():
        where = f"{source}: build_plan.{backend}"
        if not isinstance(entry, dict):
            raise BundleError(f"{where}: must be an object; {_RE_EXPORT}")
        _require(entry, "settings", dict, where, optional={})
        for graph, sources in _require(entry, "graphs", dict, where).items():
            if not isinstance(sources, dict) or not sources:
                raise BundleError(f"{where}.graphs.{graph}: must map precisions to ONNX paths; {_RE_EXPORT}")
            for precision in sources:
                _hashed_path(sources, precision, hashed, f"{where}.graphs.{graph}")
        calibration = _require(entry, "calibration", dict, where, optional={})
        for graph in calibration:
            _hashed_path(calibration, graph, hashed, f"{where}.calibration")
    return dict(plan)


def _preference(data: dict[str, Any], source: str, artifacts: list[Artifact],
                build_plan: dict[str, Any] | None = None) -> list[str]:
    """The manifest's ``backend_preference``: distinct names of backends its artifacts use (or that
    its ``build_plan`` builds on the device)."""
    order = _require(data, "backend_preference", list, source, optional=[])
    present = {a.backend for a in artifacts} | set(build_plan or {})
    if not all(isinstance(b, str) for b in order) or len(set(order)) != len(order):
        raise BundleError(f"{source}: key 'backend_preference' must list distinct backend names; {_RE_EXPORT}")
    stray = [b for b in order if b not in present]
    if stray:
        raise BundleError(f"{source}: backend_preference names {stray[0]!r}, which has no artifact; {_RE_EXPORT}")
    return list(order)


@functools.lru_cache(maxsize=None)
def _profile_order(target: str) -> tuple[str, ...]:
    """The preference order of a shipped target profile (``()`` for a target this install lacks)."""
    from .devices import list_profiles, load_profile

    return load_profile(target).backends if target in list_profiles() else ()


def load_bundle(path: Path | str, *, verify: bool = True) -> Bundle:
    """Open a bundle folder (or its ``manifest.json``), validate it and, by default, verify hashes.

    Raises:
        BundleError: missing folder or manifest, invalid JSON or keys, newer schema, or a file
            that is missing or does not match its sha256.

    Illustration (not run as a doctest: it needs files or a model)::

        b = load_bundle("bundle")
        b.backends()
        # -> ['onnxruntime', 'openvino']
    """
    root = Path(path)
    if root.name == MANIFEST and not root.is_dir():
        root = root.parent
    if not root.is_dir():
        raise BundleError(f"bundle {root}: folder not found; pass the folder written by `slimsam-edge export`")
    where = f"bundle {root}"
    if not os.path.lexists(root / MANIFEST):
        raise BundleError(f"{where}: no {MANIFEST} inside; {_RE_EXPORT}")
    try:
        text = read_inside(root, MANIFEST, where, max_bytes=MAX_MANIFEST_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BundleError(f"{where}: cannot read {MANIFEST} ({err}); {_RE_EXPORT}") from None
    bundle = Bundle(root, Manifest.from_json(text, source=f"{where}: {MANIFEST}"))
    if verify:
        bundle.verify()
    return bundle
