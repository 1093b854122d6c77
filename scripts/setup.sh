#!/usr/bin/env bash
# Set up geoharmony on a fresh Debian machine: the Fashion-MNIST package and two small font
# packages, a virtual environment in .venv, and the package with its test tools. Safe to run
# again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Fashion-MNIST, and the two small font packages the glyphs source's tests render from (the
# full font set is scripts/install_glyph_fonts.sh, docs/glyphs.md).
missing=()
for package in dataset-fashion-mnist fonts-dejavu-core fonts-liberation2; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "[setup] installing the Debian packages ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import geoharmony, ot, pytest, pycocotools" >/dev/null 2>&1; then
    echo "[setup] installing geoharmony and its test tools into .venv (a minute or two)"
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import geoharmony, ot, pytest, pycocotools"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
