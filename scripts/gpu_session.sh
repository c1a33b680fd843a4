#!/usr/bin/env bash
# One lent-GPU session (see docs/results/gpu.md): the GPU-marked tests, sam-mini trained within a
# time budget, then the new teacher compressed to 50% and 77% on the GPU, side by side.
# Usage (on the GPU machine, from the repo root; wheels for what its image lacks in .whl/):
#   OUT=/some/dir TRAIN_S=300 END_S=560 bash scripts/gpu_session.sh
# TRAIN_ARGS go to scripts/train_sam_mini_gpu.py; the default continues the shipped weights on new
# images on their own token grid (patch 8 since stage 5), as stage 6 was trained. Pick a data seed
# that the model card's stages have not used yet. COMPRESS_STEPS=0 skips the compress check.
set -u
T0=$(date +%s)
END_S=${END_S:-560}
left() { echo $(( T0 + END_S - $(date +%s) )); }
. "$(dirname "$0")/gpu_env.sh"
LOG=$OUT/session.log
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"; } >>"$LOG" 2>&1
echo "== gpu tests" >>"$LOG"
timeout 90 python3 -m pytest -q -p no:cacheprovider -o addopts="" -m "gpu and not tensorrt" tests/ >>"$LOG" 2>&1
echo "== train sam-mini ($(left) s left)" >>"$LOG"
timeout $(( ${TRAIN_S:-300} + 150 )) python3 scripts/train_sam_mini_gpu.py --out runs/sam-mini-gpu --copy-to "$OUT" --budget-s "${TRAIN_S:-300}" \
  ${TRAIN_ARGS:---init sam-mini --data-seed 11 --lr 1e-4 --warmup-steps 50 --select mean --box-fraction 0.6 --eval-every 250} 2>&1 \
  | grep -v "^step [0-9]*/[0-9]* \|^min$" >>"$LOG"
TEACHER=runs/sam-mini-gpu/best.safetensors
[ -f "$TEACHER" ] || { echo "no teacher: stop" >>"$LOG"; exit 1; }
if [ ! -f "$OUT/best.safetensors" ]; then  # training was cut off: bring back the best weights so far
  python3 -c "import sys; from pathlib import Path; from slimsam_edge.reference.card import fp16_copy; fp16_copy(Path(sys.argv[1]), Path(sys.argv[2]))" \
    "$TEACHER" "$OUT/best.safetensors" >>"$LOG" 2>&1
  cp runs/sam-mini-gpu/log.jsonl "$OUT/log.jsonl"
  echo "training cut off: best weights so far copied" >>"$LOG"
fi
[ "${COMPRESS_STEPS:-1500}" -gt 0 ] || { echo "== done (no compress), $(left) s left" >>"$LOG"; exit 0; }
echo "== compress ($(left) s left)" >>"$LOG"
budget=$(( $(left) - 15 ))
for r in 50 77; do
  timeout "$budget" python3 -m slimsam_edge.cli.app compress --device cuda --preset slimsam-$r --teacher "$TEACHER" \
    --steps "${COMPRESS_STEPS:-1500}" --batch 16 --lr 3e-4 --images 1000 --val-every 250 --val-images 16 \
    --eval-images 64 --out runs/c$r --json >runs/c$r.json 2>runs/c$r.err &
done
wait
for r in 50 77; do
  echo "-- c$r: $(tail -c 300 runs/c$r.err)" >>"$LOG"
  cp runs/c$r.json "$OUT/c$r.json" 2>/dev/null
  cp runs/c$r/model.safetensors "$OUT/c$r.safetensors" 2>/dev/null
done
echo "== done, $(left) s left" >>"$LOG"
