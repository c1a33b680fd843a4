"""The shipped reference model (sam-mini): its model card's numbers reproduce, and deployment keeps them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from slimsam_edge.assets import MODEL_CARD, reference_model_path
from slimsam_edge.cli.app import app
from slimsam_edge.reference.card import TARGETS

runner = CliRunner()
MARGIN = 0.05  # a 16-image subset of the card's 64-image split


@pytest.fixture(scope="module")
def card() -> dict:
    path = MODEL_CARD.with_suffix(".json")
    assert reference_model_path().is_file() and path.is_file(), "the package must ship sam-mini and its card"
    return json.loads(path.read_text())


def test_card_describes_the_shipped_weights(card) -> None:
    from slimsam_edge.fsutil import sha256_file

    assert card["weights"] == reference_model_path().name
    assert card["training"]["steps_run"] >= card["training"]["best_step"] > 0
    assert "slimsam-edge train-reference" in card["commands"][0]
    text = MODEL_CARD.read_text()
    for split in card["splits"].values():
        assert f"{split['point_miou']:.4f}" in text and f"{split['box_miou']:.4f}" in text
    assert len(sha256_file(reference_model_path())) == 64


def test_eval_reproduces_the_card(card) -> None:
    """`slimsam-edge eval` with no model and no data = the card's held-out split (first 16 images)."""
    r = runner.invoke(app, ["eval", "--json", "--limit", "16"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    held = card["splits"]["heldout"]
    assert res["n_images"] == 16
    point, box = res["point"]["miou"], res["box"]["miou"]
    assert point == pytest.approx(held["point_miou"], abs=MARGIN)
    assert box == pytest.approx(held["box_miou"], abs=MARGIN)
    # the card states, per split, whether the targets are met; the test holds the card to its word
    assert card["targets_met"] == {name: all(s[k] >= v for k, v in TARGETS.items()) for name, s in card["splits"].items()}
    # the point target holds on every split, the selection split included (up to the subset's noise)
    assert all(s["point_miou"] >= TARGETS["point_miou"] for s in card["splits"].values())
    assert point >= TARGETS["point_miou"] - MARGIN and box >= TARGETS["box_miou"] - MARGIN


def test_card_headlines_the_split_that_chose_nothing(card) -> None:
    """The card opens with the test split (never chose a checkpoint) beside the selection split and an
    unseen seed, and says in words which target is not robustly met."""
    from slimsam_edge.reference.card import SPLITS, unseen_command

    assert set(card["splits"]) == set(SPLITS) >= {"heldout", "test", "unseen"}
    head = MODEL_CARD.read_text().split("## What to expect", 1)[1].split("\n## ", 1)[0]
    assert head.index("| test |") < head.index("| heldout |") < head.index("| unseen |")
    assert unseen_command() in head
    for name in ("test", "unseen"):
        s = card["splits"][name]
        assert f"{s['point_miou']:.4f} | {s['box_miou']:.4f}" in head
    if not all(card["targets_met"].values()):
        assert "not robustly met" in head


def test_onnx_bundle_keeps_the_accuracy(tmp_path) -> None:
    """PyTorch and an exported ONNX Runtime bundle of sam-mini agree within 0.01 mIoU."""
    from slimsam_edge.eval.evaluate import default_eval_data, evaluate, open_model
    from slimsam_edge.exporters.bundle_export import export_bundle
    from slimsam_edge.models.io import load_model

    sam, spec = load_model(reference_model_path())
    bundle = tmp_path / "bundle"
    export_bundle(sam, spec, bundle, target="onnx", model_id="sam_mini")
    results = {}
    for label, target, backend in (("torch", reference_model_path(), None), ("ort", bundle, "onnxruntime")):
        predictor, _ = open_model(target, backend=backend)
        results[label] = evaluate(predictor, default_eval_data(8), prompt="both")
    for kind in ("point", "box"):
        assert results["ort"][kind]["miou"] == pytest.approx(results["torch"][kind]["miou"], abs=0.01)
