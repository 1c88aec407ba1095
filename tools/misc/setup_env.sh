#!/usr/bin/env bash
# Create (or complete) the virtual environment that `make demo` and
# `make test` use:   bash tools/misc/setup_env.sh [VENV]     (default: .venv)
#
# - torch/torchvision: a matched pair from the package index. `===` pins the
#   exact public release: `==` would also accept a local `+cpu` torch build,
#   next to which the index's torchvision (needed by timm) does not import.
# - mmcv 2.1.0 (mmseg 1.2.2 and mmdet 3.3.0 refuse >= 2.2) has no wheel for
#   this torch: it is built once from the PyPI source with its compiled ops
#   (CPU ops when no GPU is visible) and cached as a wheel outside the repo,
#   in $CAIT_MM_CACHE (default ~/.cache/cait_mm), so later installs take
#   seconds.
# - mmseg, mmdet and mmpretrain (the ImageNet stage) come from
#   requirements.txt; all three import side by side with mmcv 2.1.0.
set -euo pipefail

VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
CACHE=${CAIT_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cait_mm}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.28.0}
MMCV_VERSION=2.1.0
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

log() { echo "[setup_env] $*"; }

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

# mmcv's setup.py imports pkg_resources, which setuptools 82 removed.
"${PIP[@]}" --upgrade pip 'setuptools<82' wheel ninja psutil

if ! "$PY" -c "import torch, torchvision, sys; \
sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    log "installing torch $TORCH_VERSION and torchvision $TORCHVISION_VERSION"
    "${PIP[@]}" "torch===$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
"${PIP[@]}" "mmengine==0.10.7"

install_mmcv() {
    local torch_tag py_tag wheel_dir src std
    torch_tag=$("$PY" -c "import torch; print(torch.__version__)")
    py_tag=$("$PY" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
    wheel_dir="$CACHE/wheels/mmcv-$MMCV_VERSION-torch$torch_tag-$py_tag-$(uname -m)"
    if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
        log "building mmcv $MMCV_VERSION with ops for torch $torch_tag" \
            "(10-25 minutes, once; cached in $wheel_dir)"
        src=$(mktemp -d)
        "$PY" -m pip download --quiet --no-deps --no-binary :all: \
            --no-build-isolation "mmcv==$MMCV_VERSION" -d "$src"
        tar xzf "$src"/mmcv-$MMCV_VERSION.tar.gz -C "$src"
        # torch >= 2.14 headers need C++20; mmcv 2.1.0 asks for C++17.
        std=$("$PY" -c "import torch; v = tuple(int(x) for x in \
torch.__version__.split('+')[0].split('.')[:2]); \
print('c++20' if v >= (2, 14) else 'c++17')")
        sed -i "s/-std=c++17/-std=$std/g" "$src/mmcv-$MMCV_VERSION/setup.py"
        mkdir -p "$wheel_dir.tmp.$$"
        (cd "$src/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 \
            MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel --quiet \
            --no-build-isolation --no-deps -w "$wheel_dir.tmp.$$" . ) \
            || { rm -rf "$wheel_dir.tmp.$$" "$src"; exit 1; }
        # Publish atomically: a concurrent or interrupted build never leaves
        # a half-written wheel in the cache.
        mkdir -p "$(dirname "$wheel_dir")"
        mv -T "$wheel_dir.tmp.$$" "$wheel_dir" 2>/dev/null || rm -rf "$wheel_dir.tmp.$$"
        rm -rf "$src"
    fi
    log "installing mmcv from $wheel_dir"
    "${PIP[@]}" --no-deps --force-reinstall "$wheel_dir"/mmcv-*.whl
}

if ! "$PY" -c "import mmcv, sys; from mmcv.ops import nms; \
sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
    install_mmcv
fi

"${PIP[@]}" -r "$ROOT/requirements.txt"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
"$PY" -c "import mmcv.ops, mmseg, mmdet, mmpretrain, timm, cait_mm; \
print('[setup_env] ready: torch', __import__('torch').__version__, \
'| mmcv', mmcv.__version__, '| mmseg', mmseg.__version__, \
'| mmdet', mmdet.__version__, '| mmpretrain', mmpretrain.__version__, \
'| timm', timm.__version__)"
