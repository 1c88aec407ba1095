#!/usr/bin/env bash
# The speed issue's GPU checks in one run (about a quarter of an hour on
# an H200: the eager tables take a minute, each compiled one 3-5 minutes):
# the CUDA tests, then DeiT-S 224 backbones at batch 64 and 256 and the
# whole UperNet at 512 batch 8, each eager and compiled (reduce-overhead,
# CUDA graphs), fp16 autocast; ratios to the dense row of the same run,
# and a profile of one call of each row (top kernels, GPU busy time). The
# eager tables add ATME with its Triton merge (kernel=triton, two kernels
# a merge instead of about 40 operators) and, with --bound, each reducer's
# bound: the blocks at its token counts with reductions that cost nothing,
# the most its schedule can give in that mode on this machine.
#
#   bash tools/gpu_speed_check.sh [OUT_DIR]     (default work_dirs/gpu_speed)
#
# Tables land in OUT_DIR as Markdown and JSON (tools/benchmark.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-work_dirs/gpu_speed}
mkdir -p "$OUT"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else
    "no CUDA device: this script measures the GPU")'

# a failing CUDA test is reported (and fails the script) after the tables
tests_rc=0
"$PY" -m pytest -q tests/test_models/test_backbones/test_cait_vit_cuda.py \
    tests/test_core/test_atme_triton.py 2>&1 | tee "$OUT/cuda_tests.txt" || tests_rc=$?

D=configs/upernet/upernet_deit_s_ade20k.py
R=model.backbone.token_reducer
ATME="$D@$R.type=ATME@$R.schedule=deit-s"
TPS="$D@$R.type=TPS@$R.blocks=[3,6,9]@$R.keep_ratio=0.7"
bench() {
    "$PY" tools/benchmark.py "$D" "$ATME" "$TPS" "$@" --device cuda --amp \
        --profile --out-dir "$OUT" 2>&1 | grep -v '^repeat'
}
# eager tables first: they take seconds, the compiled ones minutes
EAGER=("$ATME@$R.kernel=triton" --labels deit-s atme tps atme-triton --bound)
for batch in 64 256; do
    bench "${EAGER[@]}" --part backbone --shape 224 224 \
        --batch-size "$batch" --warmup 5 --repeats 20
done
bench "${EAGER[@]}" --part model --shape 512 512 --batch-size 8 --warmup 3 \
    --repeats 10
# the compiled UperNet first: the last run ran out of time before it
bench --labels deit-s atme tps --part model --shape 512 512 --batch-size 8 \
    --warmup 3 --repeats 10 --compile
for batch in 64 256; do
    bench --labels deit-s atme tps --part backbone --shape 224 224 \
        --batch-size "$batch" --warmup 5 --repeats 20 --compile
done
[ "$tests_rc" = 0 ] || { echo "CUDA tests failed: $OUT/cuda_tests.txt"; exit 1; }
