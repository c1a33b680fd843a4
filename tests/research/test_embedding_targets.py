"""``scripts/embedding_targets.py``: the teacher's decoder on each compress embedding target."""

from __future__ import annotations

import torch

from slimsam_edge.models.build import build_sam, random_init_
from slimsam_edge.models.regrid import resize_embedding, resize_input
from slimsam_edge.research.embedding_targets import _resized_teacher, render, score_targets

from helpers import tiny_compress_spec

SPEC = tiny_compress_spec(128, 4)


def test_at_the_teachers_size_every_target_is_the_teacher():
    """The shipped sam-mini: at its own 256 px both targets are the teacher itself; at 192 px the teacher's
    decoder reads the moved teacher's embedding better than the resized one (both below the teacher)."""
    from slimsam_edge.assets import require_reference_model
    from slimsam_edge.models.io import load_model

    sam, spec = load_model(require_reference_model())
    r = score_targets(sam, spec, [256, 192], images=3)
    same, small = r["sizes"]["256"], r["sizes"]["192"]
    assert same["regridded"] == same["resized"] == r["teacher"] and r["teacher"]["point"] > 0.5
    assert small["resized"]["point"] < small["regridded"]["point"] <= r["teacher"]["point"]
    table = render(r, "python scripts/embedding_targets.py --sizes 256 192")
    assert "| 256 | " in table and "| 192 | " in table and "100.0 %" in table
    assert "–" in render({**r, "teacher": {**r["teacher"], "point": 0.0}}, "x")  # a 0 reference: no ratio


def test_the_resized_target_is_the_teachers_embedding_on_the_students_grid():
    sam = random_init_(build_sam(SPEC), seed=2).eval()
    enc = _resized_teacher(sam.image_encoder, 6, 96)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), resize_embedding(sam.image_encoder(resize_input(x, 128)), 6))
    assert enc.img_size == 96


def test_bad_sizes_and_counts_are_one_line_exit_2(capsys):
    import pytest

    from slimsam_edge.research.embedding_targets import main

    for argv, words in ((["--sizes", "100"], "--sizes 100 is not a multiple of the patch size"),
                        (["--sizes", "512"], "larger than the teacher's"),
                        (["--images", "0"], "--images must be at least 1")):
        with pytest.raises(SystemExit) as err:
            main(argv)
        assert err.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert words in lines[-1] and "Traceback" not in "\n".join(lines)
