#!/usr/bin/env bash
# GPU smoke check for the device tool (a few minutes; run with a timeout well under its limit):
#   bash benchmarks/gpu_smoke.sh            # results under $OUT (or benchmarks/out/gpu_smoke)
# Records, on CPU and GPU side by side: DP vs non-private step time and hooks vs ghost clipping
# (benchmarks/overhead.py), the clipping table (benchmarks/clipping_speed.py: hooks / functorch / ghost
# on the 100k MLP, 1M CNN and 10M transformer; on a machine without CUDA the cuda pass is skipped),
# then privtrain run dp_sgd end to end on the GPU, with and without AMP.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../.venv/bin/python}
OUT=${OUT:-out/gpu_smoke}
mkdir -p "$OUT"
( nvidia-smi -L || echo "no nvidia-smi" ) | tee "$OUT/device.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/device.txt"
clip_device=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
$PY clipping_speed.py --device "$clip_device" --rounds ${CLIP_ROUNDS:-5} --steps ${CLIP_STEPS:-5} --out "$OUT/clipping_speed" \
  | tee "$OUT/clipping_speed_$clip_device.txt" || echo "clipping_speed on $clip_device failed" | tee -a "$OUT/clipping_speed_$clip_device.txt"
[ "${CLIP_ONLY:-0}" = 1 ] && exit 0  # the clipping table alone (a dry run on CPU: CLIP_ONLY=1 CLIP_ROUNDS=1 CLIP_STEPS=1)
for device in cpu cuda; do
  $PY overhead.py --models mlp cnn --batches 256 1024 --modes hooks ghost --steps 10 --device "$device" \
    | tee "$OUT/overhead_$device.txt" || echo "overhead on $device failed" | tee -a "$OUT/overhead_$device.txt"
done
cp out/overhead/overhead_*.md "$OUT/" 2>/dev/null || true
work=$(mktemp -d); mkdir -p "$work/.privtrain"
for amp in false true; do
  start=$(date +%s.%N)
  (cd "$work" && $PY -c "from privtrain.cli import main; main()" run dp_sgd device=cuda recipe.amp=$amp \
      recipe.progress=false model=cnn dataset=digits) | tee "$OUT/dp_sgd_cuda_amp_$amp.txt"
  echo "wall $(echo "$(date +%s.%N) - $start" | bc) s" | tee -a "$OUT/dp_sgd_cuda_amp_$amp.txt"
done
rm -rf "$work"
