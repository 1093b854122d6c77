#!/usr/bin/env bash
# Set up geoharmony on a fresh Debian machine: the Fashion-MNIST package, a virtual environment
# in .venv, and the package with its test tools. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    echo "[setup] installing the Debian package dataset-fashion-mnist"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
fi

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import geoharmony, ot, pytest" >/dev/null 2>&1; then
    echo "[setup] installing geoharmony and its test tools into .venv (a minute or two)"
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import geoharmony, ot, pytest"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
