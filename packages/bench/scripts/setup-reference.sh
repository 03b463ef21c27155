#!/usr/bin/env bash
# `pnpm bench:reference`: the bench's PyTorch reference in a venv at .peftkit/bench-venv: PyTorch 2.x
# (CPU) with transformers and PEFT, what a user would compare with. `pnpm bench` uses it when it exists
# (PEFTKIT_BENCH_PYTHON overrides; Debian's /usr/bin/python3 is the named fallback).
# Idempotent: an existing venv with everything importable is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
venv="${PEFTKIT_BENCH_VENV:-$root/.peftkit/bench-venv}"
python="${PYTHON:-python3}"
packages=("torch>=2,<3" "transformers>=4.40" "peft>=0.13" "safetensors")

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  echo "reference venv ready: $venv"
else
  command -v "$python" >/dev/null || { echo "error: $python not found: install Python 3.9+ (or set PYTHON)" >&2; exit 1; }
  if [ -z "${PIP_INDEX_URL:-}" ]; then
    # A machine with a configured local package store: pip's first configured index, so pip does not
    # wait on an unreachable PyPI (pip tries its default index first otherwise).
    first=$("$python" -m pip config list 2>/dev/null | grep -E "index-url" | grep -oE "(file|https?)://[^ ']+" | head -n 1 || true)
    if [ -n "$first" ]; then export PIP_INDEX_URL="$first"; echo "pip index: $first (from pip config)"; fi
  fi
  echo "creating $venv and installing ${packages[*]} (a few minutes)..."
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "${packages[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
"$venv/bin/python" -c "import torch, transformers, peft, platform; print(f'python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}')"
echo "pnpm bench now uses $venv/bin/python for the PyTorch + PEFT reference"
