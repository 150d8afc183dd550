#!/usr/bin/env bash
# One lent-GPU call: the STLight race (kerastp on JAX vs the PyTorch reference), then the
# `mmnist` pretrained model for the rest of the call's time. Run from the checkout root with
#   .whl/  keras, namex, optree wheels for the machine's Python (see ../shared/gpu/README.md)
#   .gpu/  mnist.npz and torch_stlight.py copied from ../shared
# Usage: bash benchmarks/gpu_session.sh OUT_DIR CALL_SECONDS
set -o pipefail
OUT=${1:?output folder}; CALL=${2:-590}; T0=$(date +%s)
mkdir -p "$OUT"
[ -n "$SKIP_WHEELS" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false \
  PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/log.txt"
timeout "${RACE_SECONDS:-260}" python3 benchmarks/gpu.py --out "$OUT/race" \
  --torch-script .gpu/torch_stlight.py --batches 16,64 --steps 20 2>&1 | tee -a "$OUT/log.txt"
# The depth-wise form the race chose for bfloat16 (Keras' own if the race did not get there).
IMPL=$(python3 - "$OUT/race/gpu.jsonl" <<'PY'
import json, sys
try:
    rows = [json.loads(l) for l in open(sys.argv[1])]
    print([r["impl"] for r in rows if r.get("phase") == "choice" and r["dtype"] == "bfloat16"][-1])
except Exception:
    print("keras")
PY
)
LEFT=$(( CALL - ($(date +%s) - T0) - 15 ))
MINUTES=$(python3 -c "print(round($LEFT / 60, 2))")
echo "pretrain mmnist: depthwise=$IMPL, $MINUTES minutes" | tee -a "$OUT/log.txt"
python3 benchmarks/pretrain.py mmnist --out "$OUT/mmnist" --minutes "$MINUTES" \
  --dtype bfloat16 --depthwise "$IMPL" --mnist .gpu/mnist.npz --workers 12 \
  --test-sequences 1000 2>&1 | grep -v "^Epoch" | tee -a "$OUT/log.txt"
rm -rf "$OUT/mmnist/backup"
