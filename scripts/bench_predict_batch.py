"""Decoder time for 64 box prompts on one image: one predict_batch vs 64 predict calls, ONNX Runtime
and OpenVINO fp32, interleaved rounds (medians). Not a test: numbers depend on the machine.

    slimsam-edge export --out /tmp/a-bundle
    python scripts/bench_predict_batch.py /tmp/a-bundle 7
"""
import sys, time
import numpy as np
from slimsam_edge.predictor import EdgePredictor

bundle = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
rng = np.random.default_rng(0)
img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
x0, y0 = rng.uniform(0, 400, 64), rng.uniform(0, 300, 64)
boxes = np.stack([x0, y0, x0 + rng.uniform(20, 240, 64), y0 + rng.uniform(20, 180, 64)], 1)
for backend in ("onnxruntime", "openvino"):
    p = EdgePredictor.from_bundle(bundle, backend=backend, precision="fp32")
    p.set_image(img)
    p.predict_batch(boxes=boxes); p.predict(box=boxes[0])  # warm-up
    res = {"batch_dec": [], "batch_total": [], "loop_dec": [], "loop_total": [], "batch16_dec": []}
    for r in range(rounds):
        for mode in (("batch", "loop") if r % 2 == 0 else ("loop", "batch")):
            t0 = time.perf_counter()
            if mode == "batch":
                p.predict_batch(boxes=boxes)
                res["batch_dec"].append(p.timings["decoder"])
            else:
                dec = 0.0
                for b in boxes:
                    p.predict(box=b)
                    dec += p.timings["decoder"]
                res["loop_dec"].append(dec)
            res[f"{mode}_total"].append(time.perf_counter() - t0)
        p.prompt_chunk = 16
        p.predict_batch(boxes=boxes); res["batch16_dec"].append(p.timings["decoder"])
        p.prompt_chunk = 32
    med = {k: 1000 * float(np.median(v)) for k, v in res.items()}
    print(f"{backend}: decoder 64 boxes: predict_batch (chunks of 32) {med['batch_dec']:.1f} ms, "
          f"(chunks of 16) {med['batch16_dec']:.1f} ms, 64x predict {med['loop_dec']:.1f} ms "
          f"-> {med['loop_dec'] / med['batch_dec']:.2f}x; end to end (decoder + postprocess to 480x640) "
          f"{med['batch_total']:.1f} ms vs {med['loop_total']:.1f} ms; medians of {rounds} interleaved rounds")
