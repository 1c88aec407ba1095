#!/usr/bin/env bash
# The GPU speed checks in one run, what users run first (fp16 autocast,
# ratios to the dense row of the same table):
#   - the whole UperNet DeiT-S 512 batch 8 with dense, ATME (preset
#     'deit-s' and few-merge 'deit-s-few', each also with the Triton merge
#     in eager mode), ToMe and EViT at ATME's block FLOPs, slim-half (ATME
#     + half of the backbone and head channels, with either schedule) and
#     CDCP alone ('cdcp-half'), eager and compiled;
#   - tools/test.py --compile --amp on the real evaluation path (mmseg's
#     whole-image inference of 512x512 images read from files,
#     preprocessing, post-processing and the IoU metric included):
#     images/s of dense, few-merge ATME and slim-half;
#   - DeiT-B 512 batch 8, backbone and whole model; DeiT-S 224 backbones at
#     batch 64 and 256, eager with each reducer's bound, and compiled;
#   - one profile per row (top kernels, GPU busy time, kernels launched),
#     and the CUDA tests.
#
#   bash tools/misc/gpu_speed_check.sh [--quick] [OUT_DIR]   (work_dirs/gpu_speed)
#
# --quick leaves out the compiled CDCP/ToMe/EViT UperNet rows and the
# tables after the first three pairs. Steps run in the order of what users
# need most, and a table already in OUT_DIR is not measured again: a run
# cut short continues where it stopped when started again (FORCE=1
# measures everything anew).
# Compiling takes a minute or more per row, so every compiled row is first
# compiled in a process of its own, several at once on spare cores while
# the eager tables run on two others (inductor's caches are on disk); the
# compiled tables then find their graphs compiled and run alone.
# Each table lands in OUT_DIR as Markdown, JSON (tools/analysis_tools/benchmark.py's
# format, device and mode in its setting), its log and its profile; the
# test.py runs as test_compile.{md,json}; summary.md lists every table.
# SMOKE=1 runs the same plan tiny, on the CPU, with the 'eager' compile
# backend: it checks the plan, not the speed.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
QUICK=0
[ "${1:-}" = --quick ] && { QUICK=1; shift; }
OUT=${1:-work_dirs/gpu_speed}
WORK=${WORK:-$OUT/work}  # test images, random-weight checkpoints, warm-up
mkdir -p "$OUT" "$WORK/warm"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore

if [ "${SMOKE:-0}" = 1 ]; then
    DEVICE=cpu; S224=(64 64); S512=(64 64); B64=2; B256=2; B8=1
    REP=(--warmup 1 --repeats 1); REP_S=(--warmup 1 --repeats 1)
    BACKEND=(--compile-backend eager); TEST_IMAGES=4; TEST_WARMUP=1
    PAR=2
else
    DEVICE=cuda; S224=(224 224); S512=(512 512); B64=64; B256=256; B8=8
    REP=(--warmup 5 --repeats 20); REP_S=(--warmup 3 --repeats 10)
    BACKEND=(); TEST_IMAGES=${TEST_IMAGES:-100}; TEST_WARMUP=10
    PAR=${PAR:-6}
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available()
        else "no CUDA device: this script measures the GPU (SMOKE=1 checks
        the plan on the CPU)")' || exit 1
fi
# the eager tables on two cores, the compiling processes on the rest
PIN=() PIN_REST=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 8 ]; then
    PIN=(taskset -c 0,1) PIN_REST=(taskset -c "2-$(($(nproc) - 1))")
fi
done_() { [ "${FORCE:-0}" != 1 ] && [ -f "$OUT/$1" ]; }

D=configs/upernet/upernet_deit_s_ade20k.py
DB=configs/upernet/upernet_deit_b_ade20k.py
SLIM=configs/upernet/upernet_cait_s_slim-half_ade20k.py
R=model.backbone.token_reducer
ATME="$D@$R.type=ATME@$R.schedule=deit-s"
FEW="$D@$R.type=ATME@$R.schedule=deit-s-few"
# at 224 the few-merge preset's ratios round to more FLOPs (0.53); this
# schedule has the preset's (for_flops(..., max_points=2): 0.475 vs 0.482)
FEW224="$D@$R.type=ATME@$R.schedule=[[3,h,1.0],[4,v,1.0]]"
SLIMFEW="$SLIM@$R.schedule=deit-s-few"
W=model.backbone.channel_widths H=model.decode_head.channel_widths
CDCP="$D@$W.qk=0.5@$W.v=0.5@$W.mlp=0.5@$H.ppm=0.5@$H.lateral=0.5@$H.fpn=0.5@$H.fuse=0.5"
ATMEB="$DB@$R.type=ATME@$R.schedule=deit-b"
FEWB="$DB@$R.type=ATME@$R.schedule=deit-b-few"
TRITON="@$R.kernel=triton"
# block FLOPs of the ATME preset (ToMe and EViT rows are set to it)
MATCH512=0.495 MATCH224=0.482
UPERNET_S=(--part model --shape "${S512[@]}" --batch-size "$B8" "${REP_S[@]}")
S224_64=(--part backbone --shape "${S224[@]}" --batch-size "$B64" "${REP[@]}")
S224_256=(--part backbone --shape "${S224[@]}" --batch-size "$B256" "${REP[@]}")
B512=(--shape "${S512[@]}" --batch-size "$B8" "${REP_S[@]}")

# --- the tables: NAME_E entries, NAME_L labels, NAME_O options (the
# setting, and rows matched to the first entry's FLOPs) ---
ET=() ETL=()  # the Triton merge runs on CUDA tensors only
if [ "$DEVICE" = cuda ] && "$PY" -c 'import triton' 2>/dev/null; then
    ET=("$ATME$TRITON" "$FEW$TRITON") ETL=(atme-triton atme-few-triton)
fi
upernet_s_E=("$D" "$ATME" "$FEW" "$SLIM" "$SLIMFEW" "$CDCP")
upernet_s_L=(deit-s atme atme-few slim-half slim-half-few cdcp-half)
upernet_s_O=(--flops-target "$MATCH512" --reducers ToMe EViT "${UPERNET_S[@]}")
e_upernet_s_512_b8_E=("${upernet_s_E[@]:0:3}" "${ET[@]}" "${upernet_s_E[@]:3}")
e_upernet_s_512_b8_L=("${upernet_s_L[@]:0:3}" "${ETL[@]}" "${upernet_s_L[@]:3}")
e_upernet_s_512_b8_O=("${upernet_s_O[@]}")
if [ "$QUICK" = 1 ]; then
    c_upernet_s_512_b8_E=("${upernet_s_E[@]:0:5}")
    c_upernet_s_512_b8_L=("${upernet_s_L[@]:0:5}")
    c_upernet_s_512_b8_O=("${UPERNET_S[@]}")
else
    c_upernet_s_512_b8_E=("${upernet_s_E[@]}")
    c_upernet_s_512_b8_L=("${upernet_s_L[@]}")
    c_upernet_s_512_b8_O=("${upernet_s_O[@]}")
fi
deit_b_E=("$DB" "$ATMEB" "$FEWB") deit_b_L=(deit-b atme atme-few)
for t in {e,c}_deit_b_512_b8_{backbone,model}; do
    declare -n E=${t}_E L=${t}_L O=${t}_O
    E=("${deit_b_E[@]}") L=("${deit_b_L[@]}")
    O=(--part "${t##*_}" "${B512[@]}")
    unset -n E L O
done
ET224=()
[ ${#ET[@]} -gt 0 ] && ET224=("$ATME$TRITON" "$FEW224$TRITON")
for b in 64 256; do
    declare -n E=e_deit_s_224_b${b}_E L=e_deit_s_224_b${b}_L \
        O=e_deit_s_224_b${b}_O S=S224_$b
    E=("$D" "$ATME" "$FEW224" "${ET224[@]}")
    L=(deit-s atme atme-few "${ETL[@]}")
    O=(--bound "${S[@]}")
    [ "$b" = 64 ] && O+=(--flops-target "$MATCH224" --reducers ToMe EViT)
    unset -n E L O
    declare -n E=c_deit_s_224_b${b}_E L=c_deit_s_224_b${b}_L \
        O=c_deit_s_224_b${b}_O
    E=("$D" "$ATME" "$FEW224") L=(deit-s atme atme-few) O=("${S[@]}")
    unset -n E L O S
done

# the plan, most needed first: tables (e_ eager, c_ compiled) and 'test'
PLAN=(e_upernet_s_512_b8 e_deit_b_512_b8_backbone e_deit_s_224_b64
      c_upernet_s_512_b8 test c_deit_b_512_b8_backbone c_deit_s_224_b64)
[ "$QUICK" = 0 ] && PLAN+=(e_deit_s_224_b256 e_deit_b_512_b8_model
                          c_deit_s_224_b256 c_deit_b_512_b8_model)

BENCH_PIN=()
bench() {  # TABLE: measure it (compiled if its name starts with c_)
    local name=$1 extra=(--profile)
    done_ "$name.json" && { echo "$name: in $OUT already"; return; }
    [[ $name == c_* ]] && extra+=(--compile "${BACKEND[@]}")
    declare -n E=${name}_E L=${name}_L O=${name}_O
    echo "[$(date +%T)] $name"
    "${BENCH_PIN[@]}" "$PY" tools/analysis_tools/benchmark.py "${E[@]}" --labels "${L[@]}" \
        "${O[@]}" "${extra[@]}" --device "$DEVICE" --amp --out-dir "$OUT" \
        --name "$name" > "$OUT/$name.log" 2>&1 \
        && grep -A40 '^| model' "$OUT/$name.md" | sed '/^$/,$d' \
        || { echo "FAILED: $name (tail of $OUT/$name.log)"
             tail -5 "$OUT/$name.log"; }
}

# --- tools/test.py: ADE20K-layout 512x512 images, random weights ---
TEST_ENTRIES=("dense|$D" "atme-few|$FEW" "slim-half|$SLIM")
if ! done_ test_compile.json; then
    echo "[$(date +%T)] test.py inputs in $WORK"
    "$PY" - "$WORK" "$TEST_IMAGES" "$D" "$FEW" "$SLIM" <<'PY' || exit 1
import os, sys
import numpy as np, torch, cv2
from cait_mm.analysis.benchmark import Entry
from cait_mm.analysis.model_from_config import build_model
work, count = sys.argv[1], int(sys.argv[2])
root = os.path.join(work, 'ade')
rng = np.random.default_rng(0)
for sub in ('images', 'annotations'):
    os.makedirs(os.path.join(root, sub, 'validation'), exist_ok=True)
for i in range(count):
    # smooth content (JPEG sizes of photos, not of noise) and regions
    low = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    img = cv2.resize(low, (512, 512), interpolation=cv2.INTER_CUBIC)
    label = cv2.resize(rng.integers(1, 151, (8, 8), dtype=np.uint8),
                       (512, 512), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(f'{root}/images/validation/{i:04d}.jpg', img)
    cv2.imwrite(f'{root}/annotations/validation/{i:04d}.png', label)
for name, spec in zip(('dense', 'atme-few', 'slim-half'), sys.argv[3:]):
    path = os.path.join(work, f'{name}.pth')
    if not os.path.isfile(path):
        entry = Entry.parse(spec)
        model = build_model(entry.config, entry.overrides)
        torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
PY
fi
TEST_PIN=()
test_py() {  # label|entry, work dir, number of images, warm-up batches
    local label=${1%%|*} spec=${1#*|}
    local config=${spec%%@*} options=()
    [ "$config" != "$spec" ] && IFS='@' read -ra options <<< "${spec#*@}"
    "${TEST_PIN[@]}" "$PY" tools/test.py "$config" "$WORK/$label.pth" \
        --compile --amp "${BACKEND[@]}" --work-dir "$2" --speed-warmup "$4" \
        --cfg-options "test_dataloader.dataset.data_root=$WORK/ade" \
        model.pretrained=None "test_dataloader.dataset.indices=$3" \
        "${options[@]}"
}
run_tests() {  # one after another, alone on the machine
    done_ test_compile.json && { echo "test.py: in $OUT already"; return; }
    local entry label
    for entry in "${TEST_ENTRIES[@]}"; do
        label=${entry%%|*}
        echo "[$(date +%T)] tools/test.py --compile --amp: $label"
        rm -rf "$WORK/test-$label"
        test_py "$entry" "$WORK/test-$label" "$TEST_IMAGES" "$TEST_WARMUP" \
            > "$OUT/test_$label.log" 2>&1 \
            || { echo "FAILED: test.py $label"; tail -5 "$OUT/test_$label.log"; }
        grep -h 'test speed' "$OUT/test_$label.log"
    done
    "$PY" - "$OUT" "$WORK" "$DEVICE" "$TEST_IMAGES" "$TEST_WARMUP" \
        "${TEST_ENTRIES[@]%%|*}" <<'PY'
import glob, json, sys
import torch
out, work, device, images, warmup, labels = (*sys.argv[1:6], sys.argv[6:])
rows = []
for label in labels:
    for path in sorted(glob.glob(f'{work}/test-{label}/*/*.json')):
        scores = json.loads(open(path).read().strip().splitlines()[-1])
        if 'images_per_s' in scores:
            rows.append(dict(name=label, **scores))
if rows and rows[0]['name'] == labels[0]:
    for r in rows:
        r['speedup'] = r['images_per_s'] / rows[0]['images_per_s']
    name = torch.cuda.get_device_name() if device == 'cuda' else 'cpu'
    setting = dict(tool='tools/test.py --compile --amp', device=device,
                   device_name=name, mode='compiled', images=int(images),
                   warmup_batches=int(warmup), shape=[512, 512],
                   batch_size=1, torch=torch.__version__)
    json.dump(dict(setting=setting, results=rows),
              open(f'{out}/test_compile.json', 'w'), indent=2)
    lines = [f'tools/test.py --compile --amp, 512x512 images from files, '
             f'batch 1 | {name} | {images} images, the first {warmup} '
             'batches left out', '', '| model | images/s | speed-up |',
             '| --- | ---: | ---: |']
    lines += [f'| {r["name"]} | {r["images_per_s"]:.1f} | '
              f'{r["speedup"]:.2f}x |' for r in rows]
    open(f'{out}/test_compile.md', 'w').write('\n'.join(lines) + '\n')
    print('\n'.join(lines))
PY
}

# --- compile every compiled row ahead, in parallel (background) ---
warm_one() {  # NAME ARGS...: one process that compiles what ARGS name
    local name=$1
    shift
    "${PIN_REST[@]}" "$PY" tools/analysis_tools/benchmark.py "$@" --device "$DEVICE" \
        --amp --compile "${BACKEND[@]}" --out-dir "$WORK/warm" \
        --name "$name" --warmup 1 --repeats 1 > "$WORK/warm/$name.log" 2>&1 \
        || echo "warm-up failed: $name (compiles again in its table)"
}
throttle() { while [ "$(jobs -rp | wc -l)" -ge "$PAR" ]; do sleep 1; done; }
warm_all() {
    local step i k opts kind entry
    for step in "${PLAN[@]}"; do
        if [ "$step" = test ]; then
            done_ test_compile.json && continue
            for entry in "${TEST_ENTRIES[@]}"; do
                ( TEST_PIN=("${PIN_REST[@]}")
                  test_py "$entry" "$WORK/warm/test-${entry%%|*}" \
                      $((TEST_WARMUP + 2)) 1 \
                      > "$WORK/warm/test-${entry%%|*}.log" 2>&1 \
                      || echo "warm-up failed: test.py ${entry%%|*}" ) &
                throttle
            done
            continue
        fi
        [[ $step == c_* ]] && ! done_ "$step.json" || continue
        local -n E=${step}_E O=${step}_O
        opts=() kind=()
        for ((k = 0; k < ${#O[@]}; k++)); do  # the setting, not the rows
            case ${O[k]} in
                --flops-target) k=$((k + 1)) ;;
                --reducers) while [ $((k + 1)) -lt ${#O[@]} ] \
                        && [[ ${O[k + 1]} != --* ]]; do
                        k=$((k + 1)); kind+=("${O[k]}"); done ;;
                *) opts+=("${O[k]}") ;;
            esac
        done
        for i in "${!E[@]}"; do
            warm_one "$step-$i" "${E[i]}" "${opts[@]}" &
            throttle
        done
        for i in "${kind[@]}"; do  # a process per matched reducer
            warm_one "$step-$i" "${E[0]}" "${opts[@]}" --flops-target \
                "$MATCH512" --reducers "$i" &
            throttle
        done
        unset -n E O
    done
    wait
}
echo "[$(date +%T)] compiling ahead ($PAR at a time) in the background"
warm_all > "$WORK/warm_all.log" 2>&1 &
WARM_PID=$!

# --- CUDA tests (the Triton merge's first run on a GPU) ---
if [ "$DEVICE" = cuda ] && ! done_ cuda_tests.txt; then
    echo "[$(date +%T)] CUDA tests"
    "${PIN[@]}" "$PY" -m pytest -q -p no:cacheprovider \
        tests/test_core/test_atme_triton.py \
        tests/test_models/test_backbones/test_cait_vit_cuda.py \
        > "$OUT/cuda_tests.txt" 2>&1
    tail -3 "$OUT/cuda_tests.txt"
fi

# --- the plan: eager tables on two cores while compiling goes on, then
# the compiled steps alone ---
WARMED=0
for step in "${PLAN[@]}"; do
    if [[ $step != e_* ]] && [ "$WARMED" = 0 ]; then
        echo "[$(date +%T)] waiting for the compiling processes"
        wait "$WARM_PID"
        grep -h 'failed' "$WORK/warm_all.log"
        echo "[$(date +%T)] compiled ahead"
        WARMED=1 BENCH_PIN=()
    elif [[ $step == e_* ]] && [ "$WARMED" = 0 ]; then
        BENCH_PIN=("${PIN[@]}")
    fi
    if [ "$step" = test ]; then run_tests; else bench "$step"; fi
done

# summary: every table's speed-ups in one place
"$PY" - "$OUT" <<'PY'
import glob, json, sys
out = sys.argv[1]
lines = []
for path in sorted(glob.glob(f'{out}/[ec]_*.json')) + glob.glob(
        f'{out}/test_compile.json'):
    data = json.load(open(path))
    lines.append(f'- {path.rsplit("/", 1)[-1][:-5]}: ' + ', '.join(
        f'{r["name"]} {r["speedup"]:.2f}x' for r in data['results']))
open(f'{out}/summary.md', 'w').write('\n'.join(lines) + '\n')
print('\n'.join(lines))
PY
if [ -f "$OUT/cuda_tests.txt" ] && ! tail -1 "$OUT/cuda_tests.txt" \
        | grep -q 'passed' || grep -q 'failed' "$OUT/cuda_tests.txt" 2>/dev/null; then
    echo "CUDA tests failed: $OUT/cuda_tests.txt"
    exit 1
fi
