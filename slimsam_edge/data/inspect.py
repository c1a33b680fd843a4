"""What a data path holds: layout, images, annotations, and what would be skipped and why.

``slimsam-edge data inspect``'s job: a labelled set (SA-1B folder, COCO file or root) is read once
(every image decoded) so that the skip counts are the ones an evaluation would see; a folder of
images without labels is counted.

Example:
    >>> from slimsam_edge.data.procedural import write_procedural
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> _ = write_procedural(root, 2, seed=0, size=64)
    >>> report = inspect_data(root)
    >>> report["layout"], report["images"], report["skipped"]
    ('sa1b', 2, {})
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

#: ``progress(done, total)`` after each image read
InspectProgress = Callable[[int, int], None]


def inspect_data(path: Path | str, *, image_dir: Path | str | None = None,
                 progress: InspectProgress | None = None) -> dict[str, Any]:
    """Describe ``path``: ``{"path", "layout", "images", "annotations", "skipped"}``.

    Arguments:
        path: SA-1B folder, COCO instances JSON, COCO root, or a folder of images.
        image_dir: COCO image folder (guessed when omitted).
        progress: told ``(done, total)`` after each image of a labelled set, and at the end.

    Raises:
        DataError: nothing readable at ``path`` (no layout and no image).
    """
    from .auto import detect_layout, open_labelled
    from .folder import ImageFolder
    from .records import DataSkipWarning

    path = Path(path)
    report: dict[str, Any] = {"path": str(path)}
    if detect_layout(path) is None and path.is_dir():
        folder = ImageFolder(path)  # DataError when there is no image either
        report.update(layout="images", images=len(folder), annotations=0, skipped={})
        return report
    dataset = open_labelled(path, image_dir=Path(image_dir) if image_dir else None)
    report["layout"] = dataset.layout
    images = annotations = 0
    tell = progress or (lambda done, total: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataSkipWarning)  # the report lists every skip
        for i, sample in enumerate(dataset):
            images += 1
            annotations += len(sample.annotations)
            tell(i + 1, len(dataset))
        tell(len(dataset), len(dataset))
    report.update(images=images, annotations=annotations, skipped=dataset.skipped)
    return report
