"""Open a labelled data set whatever its layout (SA-1B folder or COCO instances JSON).

Detection, in order:

1. a ``.json`` file -> COCO;
2. a folder with ``annotations/instances_*.json`` -> COCO (exactly one such file);
3. a folder where some image has a same-name ``.json`` next to it -> SA-1B;
4. a folder with no such pair but exactly one top-level ``.json`` -> COCO;
5. otherwise :class:`~slimsam_edge.errors.DataError` naming the accepted layouts.

Illustration (not run as a doctest: it needs files or a model)::

    ds = open_labelled("data/sa1b")
    ds.layout, len(ds)
    # -> ('sa1b', 120)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from ..errors import DataError
from .coco import CocoDataset
from .images import is_image_file
from .sa1b import SA1BDataset

LabelledDataset = Union[SA1BDataset, CocoDataset]

ACCEPTED = (
    "an SA-1B folder (name.jpg + name.json pairs), a COCO instances .json file, "
    "or a folder with annotations/instances_*.json"
)


def _has_sa1b_pair(folder: Path) -> bool:
    jsons, images = set(), set()
    for p in folder.rglob("*"):
        if p.name.startswith("."):
            continue
        key = (p.parent, p.stem)
        if p.suffix.lower() == ".json":
            if key in images:
                return True
            jsons.add(key)
        elif is_image_file(p):
            if key in jsons:
                return True
            images.add(key)
    return False


def detect_layout(path: Path | str) -> tuple[str, Path] | None:
    """Return ``("sa1b", folder)`` or ``("coco", annotation_file)``, or ``None`` when unknown.

    Raises DataError when the path does not exist or several COCO files make it ambiguous.

    Illustration (not run as a doctest: it needs files or a model)::

        detect_layout("coco/annotations/instances_val2017.json")
        # -> ('coco', PosixPath('coco/annotations/instances_val2017.json'))
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; pass {ACCEPTED}")
    if path.is_file():
        return ("coco", path) if path.suffix.lower() == ".json" else None
    instances = sorted((path / "annotations").glob("instances_*.json"))
    if len(instances) > 1:
        names = ", ".join(p.name for p in instances)
        raise DataError(
            f"{path / 'annotations'} holds several COCO files ({names}); pass the one to use"
        )
    if instances:
        return ("coco", instances[0])
    if _has_sa1b_pair(path):
        return ("sa1b", path)
    top = [p for p in path.glob("*.json") if not p.name.startswith(".")]
    if len(top) == 1:
        return ("coco", top[0])
    return None


def open_labelled(
    path: Path | str,
    *,
    strict: bool = False,
    image_dir: Path | str | None = None,
    **kwargs: Any,
) -> LabelledDataset:
    """Open ``path`` as an SA-1B or COCO data set (see the module doc for the detection rules).

    ``image_dir`` applies to COCO only; other keyword arguments (``limit``, ``split``, ``seed``,
    ``fractions``, ``decode_images``) go to the reader.

    Illustration (not run as a doctest: it needs files or a model)::

        ds = open_labelled("coco/", strict=True, split="val")
        ds.layout
        # -> 'coco'
    """
    found = detect_layout(path)
    if found is None:
        raise DataError(f"{path}: unrecognised data layout; expected {ACCEPTED}")
    layout, where = found
    if layout == "coco":
        return CocoDataset(where, image_dir, strict=strict, **kwargs)
    if image_dir is not None:
        raise DataError(f"{path} is an SA-1B folder: images sit next to their JSON; drop image_dir")
    return SA1BDataset(where, strict=strict, **kwargs)
