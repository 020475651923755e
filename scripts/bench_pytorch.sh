#!/usr/bin/env bash
# PyTorch CPU baseline: steps/s of plain SGD and a hand-written LossGrad step on the
# 784-500-300-100-10 MLP. See scripts/bench_pytorch.py for what is measured.
#
# Usage: scripts/bench_pytorch.sh [bench_pytorch.py args...]
#   e.g. scripts/bench_pytorch.sh --steps 200 --rounds 5 --threads 2
#
# Creates (once) a venv at .venv-bench/ in the repository root and installs torch 2.x from PyPI.
#
# How torch gets there. PyPI's Linux x86_64 torch wheel is a CUDA build: its libtorch_cuda.so,
# libtorch_python.so and libtorch_global_deps.so are linked against libcudart, cuBLAS, cuDNN,
# NCCL, ... that come from the nvidia-* / cuda-* dependency packages (several GB). PyPI has no
# CPU-only torch for Linux x86_64 (download.pytorch.org does, but that is not PyPI). So:
#   1. `pip install --no-deps torch` plus its small pure-Python deps, then a check that
#      `import torch` and a few CPU training steps work. This is enough on platforms whose PyPI
#      wheel is CPU-only (macOS, Linux aarch64).
#   2. If that check fails (it does on Linux x86_64: `import torch` raises
#      "OSError: libcudart.so.13: cannot open shared object file" and then
#      "ValueError: libcublasLt.so.*[0-9] not found in the system path"), fall back to the full
#      `pip install torch`, which keeps the torch already installed and adds the CUDA packages.
#      The benchmark only ever runs on the CPU either way.
#
# Environment:
#   BENCH_TORCH_SPEC  pip requirement for torch (default: torch==2.15.0, the version measured
#                     when this script was written; use e.g. 'torch>=2,<3' for the newest 2.x)
#   BENCH_VENV        venv directory (default: <repo>/.venv-bench)
#   BENCH_REINSTALL=1 delete and recreate the venv
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$REPO_ROOT/.venv-bench}"
TORCH_SPEC="${BENCH_TORCH_SPEC:-torch==2.15.0}"
PY_BASE="${PYTHON:-python3}"

log() { echo "[bench_pytorch.sh] $*" >&2; }

# A quick functional check: import, a forward/backward/SGD step on the CPU, loss goes down.
torch_works() {
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
opt = torch.optim.SGD(m.parameters(), lr=0.1)
first = None
for _ in range(20):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(m(x), y)
    loss.backward()
    opt.step()
    first = loss.item() if first is None else first
assert loss.item() < first, (first, loss.item())
EOF
}

if [[ "${BENCH_REINSTALL:-0}" == "1" && -d "$VENV" ]]; then
    log "BENCH_REINSTALL=1: removing $VENV"
    rm -rf "$VENV"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV"
    "$PY_BASE" -m venv "$VENV"
    # Keep the venv out of git even though .gitignore does not list it.
    echo '*' > "$VENV/.gitignore"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

if torch_works; then
    log "torch already works in $VENV"
else
    log "installing $TORCH_SPEC without dependencies (CPU-only attempt)"
    "$VENV/bin/python" -m pip install --no-cache-dir --no-deps "$TORCH_SPEC"
    # torch's own pure-Python requirements (the nvidia-*/cuda-*/triton ones left out).
    "$VENV/bin/python" -m pip install --no-cache-dir \
        filelock typing-extensions sympy networkx jinja2 fsspec 'setuptools>=77'
    if torch_works; then
        log "CPU-only install works (torch without its CUDA dependency packages)"
    else
        log "torch --no-deps does not import/train here (a CUDA wheel needing the nvidia-* libraries);"
        log "falling back to the full install: pip install $TORCH_SPEC (several GB of CUDA packages)"
        "$VENV/bin/python" -m pip install --no-cache-dir "$TORCH_SPEC"
        if ! torch_works; then
            log "ERROR: torch still does not work after the full install"
            exit 1
        fi
        log "full install works"
    fi
fi

# torch warns "Failed to initialize NumPy" on import without it; numpy is an optional torch dep.
if ! "$VENV/bin/python" -c 'import numpy' >/dev/null 2>&1; then
    log "installing numpy (optional torch dependency)"
    "$VENV/bin/python" -m pip install --no-cache-dir --quiet numpy
fi

exec "$VENV/bin/python" "$REPO_ROOT/scripts/bench_pytorch.py" "$@"
