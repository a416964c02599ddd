#!/usr/bin/env bash
# Installs the real, offline data sets contrastkit trains and evaluates on (Debian packages).
# Idempotent; needs root (or sudo) the first time.
set -euo pipefail
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
[ -d /usr/share/wordnet ] || need+=(wordnet-base)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
$SUDO apt-get install -y -q "${need[@]}"
