"""slimsam_edge.demo: the demo's seven steps as a library call (without compression: fast)."""

from __future__ import annotations

import json

from slimsam_edge.demo import STEPS, DemoReport, run_demo


def test_run_demo_without_compression_exports_evaluates_segments_and_benches(tmp_path, tiny_checkpoint):
    import cv2

    from slimsam_edge.data.procedural import procedural_sample
    from slimsam_edge.eval.evaluate import HELDOUT_SEED
    from slimsam_edge.eval.metrics import mask_iou

    out = tmp_path / "demo"
    steps: list[tuple[int, int]] = []
    report = run_demo(out, checkpoint=tiny_checkpoint, images=2, compress_steps=0, quiet=True,
                      progress=lambda step, n, what: steps.append((step, n)))
    assert steps == [(i, STEPS) for i in range(1, STEPS + 1)]
    assert isinstance(report, DemoReport) and report.compress is None
    assert not (out / "compressed").exists()
    assert list(report.eval) == ["teacher (torch)", "bundle onnxruntime", "bundle openvino"]
    ev = report.eval
    assert all(v["images"] == 2 and 0.0 <= v["point_miou"] <= 1.0 for v in ev.values())
    # the teacher's bundle reproduces the teacher's accuracy
    assert abs(ev["bundle onnxruntime"]["point_miou"] - ev["teacher (torch)"]["point_miou"]) <= 0.02
    assert [b["backend"] for b in report.bench] == ["torch", "onnxruntime", "openvino"]
    # the written reports are the returned one; no "compress" entry without compression
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report.to_dict())) and "compress" not in on_disk
    assert (out / "report.md").read_text() == report.markdown()
    assert "compressed with ratio" not in report.markdown() and "| bundle openvino |" in report.markdown()
    # the segment step's IoU is the metric's IoU of the written mask with the ground truth
    seg = report.segment
    mask = cv2.imread(seg["mask"], cv2.IMREAD_GRAYSCALE) > 0
    truth = max(procedural_sample(HELDOUT_SEED, 0, 256).annotations, key=lambda a: a.area).mask
    assert seg["iou_with_ground_truth"] == mask_iou(mask, truth)
    assert (out / "segment" / "overlay.png").is_file() and mask.shape == truth.shape
    # the video step: every frame scored and written, the overlay video playable
    from slimsam_edge.demo import VIDEO_FRAMES

    video = report.video
    assert video["frames"] == VIDEO_FRAMES and video["objects"] == 3 and 0.0 <= video["JF"] <= 1.0
    capture = cv2.VideoCapture(video["out"])
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == VIDEO_FRAMES
    capture.release()
    assert f"tracked through {VIDEO_FRAMES} frames" in report.markdown()


def test_the_report_says_what_the_short_compression_kept_next_to_the_full_schedule():
    from slimsam_edge.demo import STUDENT, TEACHER, DemoReport

    row = {"box_miou": 0.5, "images": 2, "annotations": 4}
    report = DemoReport("teacher.safetensors", "out", bundle="b", seconds=1.0,
                        compress={"ratio": 0.5, "steps_per_phase": 40, "report": "r.md", "encoder_params": [10, 5],
                                  "seconds": 300.0},
                        eval={TEACHER: {**row, "point_miou": 0.8}, STUDENT: {**row, "point_miou": 0.6}},
                        segment={"point": [1, 2], "mask": "m.png", "iou_with_ground_truth": 0.9, "overlay": "o.png"})
    text = report.markdown()
    assert "The student keeps 75.0% of the teacher's point mIoU" in text
    assert "ablation-long.md" in text and "demo-compression.md" in text
    without = DemoReport("t", "out", bundle="b", eval={TEACHER: {**row, "point_miou": 0.8}}, segment=report.segment)
    assert "keeps" not in without.markdown()  # no compression, no claim
