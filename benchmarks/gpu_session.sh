#!/usr/bin/env bash
# One lent-GPU call: the race (kerastp on JAX vs the PyTorch reference, benchmarks/gpu.py),
# then the `mmnist` pretrained model for whatever the call has left, continued from the shipped
# saved_models/mmnist/mmnist.keras (a lent machine keeps no backup between sessions; set
# PRETRAIN_INIT= to train from scratch). Run from the checkout
# root with
#   .whl/  Keras and the wheels it needs that a lent machine may lack, for its Python 3.12:
#          pip download keras==3.15.1 namex optree packaging --python-version 3.12 \
#            --only-binary=:all: --no-deps -d .whl
#   .gpu/  mnist.npz, mm_data.py and torch_stlight.py copied from ../shared
# Usage: bash benchmarks/gpu_session.sh OUT_DIR CALL_SECONDS [extra benchmarks/gpu.py args]
# (RACE_SECONDS caps the race; QUALITY_SECONDS is its equal-time training budget.)
set -o pipefail
OUT=${1:?output folder}; CALL=${2:-590}; shift 2; T0=$(date +%s)
mkdir -p "$OUT"
[ -n "$SKIP_WHEELS" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false \
  PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/log.txt"
# The equal-time quality race's sequences, written while the speed phases run.
mkdir -p /tmp/mm
[ -f /tmp/mm/mm_test.npy ] || (python3 .gpu/mm_data.py .gpu/mnist.npz /tmp/mm 10000 1000 \
  >> "$OUT/log.txt" 2>&1 &)
timeout "${RACE_SECONDS:-$((CALL - 20))}" python3 benchmarks/gpu.py --out "$OUT/race" \
  --torch-script .gpu/torch_stlight.py --quality-data /tmp/mm \
  --quality-seconds "${QUALITY_SECONDS:-45}" "$@" 2>&1 | tee -a "$OUT/log.txt"
LEFT=$(( CALL - ($(date +%s) - T0) - 15 ))
if [ "$LEFT" -lt 120 ]; then echo "no time left for pretraining ($LEFT s)" | tee -a "$OUT/log.txt"; exit 0; fi
MINUTES=$(python3 -c "print(round($LEFT / 60, 2))")
echo "pretrain mmnist: $MINUTES minutes" | tee -a "$OUT/log.txt"
INIT=${PRETRAIN_INIT-saved_models/mmnist/mmnist.keras}
python3 benchmarks/pretrain.py mmnist --out "$OUT/mmnist" --minutes "$MINUTES" \
  ${INIT:+--init "$INIT"} --dtype bfloat16 --mnist .gpu/mnist.npz --workers 12 \
  --test-sequences 1000 2>&1 | grep --line-buffered -v "^Epoch" | tee -a "$OUT/log.txt"
rm -rf "$OUT/mmnist/backup"
