#!/usr/bin/env bash
# Installs the peer packages that the parity tests and benchmarks compare contrastkit against.
#
#   bash scripts/install_peers.sh .venv/bin/python
#
# Idempotent. Every peer is installed with --no-deps at an exact version, plus only the packages
# their loss code really imports, so pip never resolves (and never replaces) the pinned CPU torch.
#
# torchvision: lightly and open_clip import it at import time. The PyPI torchvision wheel is built
# against CUDA torch; beside the CPU torch its C extension does not load and
# `import torchvision` raises "operator torchvision::nms does not exist". Installed into
# site-packages it would break every `import torchvision` in the venv (transformers' BERT, for
# one). So it goes into a side directory, $PREFIX/peer-torchvision, which is NOT on sys.path:
# tests/peers.py puts it there and registers an empty `torchvision._meta_registrations` module
# before importing lightly / open_clip (their loss code calls no torchvision operator).
set -euo pipefail

PY="${1:-.venv/bin/python}"
TORCH_VERSION="2.13.0"
TORCHVISION_VERSION="0.28.0" # the release built for torch 2.13.0

# Peers (exact versions the parity tests were written against).
PEERS=(
    "pytorch-metric-learning==2.9.0"
    "lightly==1.6.0"
    "open-clip-torch==3.3.0"
    "info-nce-pytorch==0.1.4"
    "libauc==2.0.1"
    "symile==0.1.0"
    "diffsort==0.2.0"
)
# Runtime imports of the peers' loss code that contrastkit itself does not already depend on
# (numpy, tqdm, scikit-learn, scipy, pillow, safetensors come with contrastkit[dev]).
#   open_clip: regex, ftfy (-> wcwidth). huggingface_hub and timm are optional there (try/except).
#   lightly.loss, pytorch_metric_learning.losses, libauc.losses, info_nce, symile, diffsort: none.
EXTRAS=(
    "regex==2026.11.19"
    "ftfy==6.3.1"
    "wcwidth==0.9.4"
)

torch_version() { "$PY" -c 'import torch; print(torch.__version__)'; }

before="$(torch_version)"
case "$before" in
    "$TORCH_VERSION"|"$TORCH_VERSION"+*) ;;
    *) echo "install_peers.sh: expected torch $TORCH_VERSION in $PY, found $before" >&2; exit 1 ;;
esac

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
# Guard: even a stray dependency resolution can never pick another torch.
printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" >"$constraints"

PIP=("$PY" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: -c "$constraints")

# Already installed at the pinned versions? Then pip has nothing to do (keeps reruns fast/offline).
missing=()
for req in "${PEERS[@]}" "${EXTRAS[@]}"; do
    name="${req%%==*}"
    want="${req##*==}"
    have="$("$PY" -c 'import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    print("")' "$name")"
    [ "$have" = "$want" ] || missing+=("$req")
done
if [ ${#missing[@]} -gt 0 ]; then
    "${PIP[@]}" "${missing[@]}"
fi

prefix="$("$PY" -c 'import sys; print(sys.prefix)')"
tv_dir="$prefix/peer-torchvision"
if [ ! -d "$tv_dir/torchvision-$TORCHVISION_VERSION.dist-info" ]; then
    rm -rf "$tv_dir"
    "${PIP[@]}" --target "$tv_dir" "torchvision==$TORCHVISION_VERSION"
fi

after="$(torch_version)"
if [ "$after" != "$before" ]; then
    echo "install_peers.sh: torch changed from $before to $after" >&2
    exit 1
fi

# Every peer must import (through the same loader the tests use).
here="$(cd "$(dirname "$0")/.." && pwd)"
"$PY" - "$here/tests" <<'EOF'
import sys

sys.path.insert(0, sys.argv[1])
import peers

for dist in peers.PEERS:
    peers.import_peer(dist)
print("install_peers.sh: all peers import:", ", ".join(f"{d}=={v}" for d, (v, _) in peers.PEERS.items()))
EOF
