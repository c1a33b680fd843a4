#!/usr/bin/env bash
# Re-run docs/results/ablation-long.md's two rows (alternate + disturbed Taylor, 50% and 77%) with the
# shipped sam-mini as the teacher, on a lent GPU (issue 15, item 7). On 2 CPU cores the same command
# takes about 10-11 hours with the patch-8 teacher, so it waits for a loan.
# Usage (on the GPU machine, from the repo root; wheels for what its image lacks in .whl/):
#   OUT=/some/dir BUDGET_S=480 bash scripts/gpu_ablation.sh
# A run cut off by BUDGET_S resumes from its checkpoint when called again on the same machine
# (runs/ablation-long is kept while the machine stays warm). DEVICE and STEPS override the device and
# the steps per phase (DEVICE=cpu STEPS=1 is a smoke test); the results file is $OUT/ablation-long.md,
# to be copied over docs/results/ablation-long.md(.json) when both rows are in.
set -u
. "$(dirname "$0")/gpu_env.sh"
PY=${PYTHON:-python3}
mkdir -p "$OUT"
timeout "${BUDGET_S:-480}" "$PY" scripts/ablation.py --steps "${STEPS:-1600}" --batch 4 --images 4000 \
  --importance-images 32 --val-every 200 --val-images 16 --lr 3e-4 --ratios 0.5 0.77 --schedules alternate \
  --importances disturbed-taylor --device "${DEVICE:-cuda}" --out runs/ablation-long \
  --results "$OUT/ablation-long.md" >"$OUT/ablation.log" 2>&1
rc=$?
echo "rc=$rc" >>"$OUT/ablation.log"
exit $rc
