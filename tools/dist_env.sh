# Shared by dist_train.sh and dist_test.sh (sourced): the launch settings,
# and the project's environment (make's .venv) unless PYTHON names another
# one, so that the ranks import torch and cait_mm from where make put them.
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then
        PYTHON="$ROOT/.venv/bin/python"
    else
        PYTHON=$(command -v python3 || command -v python)
    fi
fi
