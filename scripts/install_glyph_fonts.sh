#!/usr/bin/env bash
# Install the Debian font packages the glyphs source renders its characters from (docs/glyphs.md).
# About 190 MB of fonts under /usr/share/fonts. Safe to run again: apt skips what is installed.
# A package this Debian release does not carry is skipped with a note; the loader then reaches
# fewer typeface families, and says so in its class list. The tests need only the two small
# packages scripts/setup.sh installs (fonts-dejavu-core, fonts-liberation2).
set -euo pipefail

PACKAGES=(
    fonts-aenigma
    fonts-urw-base35
    fonts-texgyre
    fonts-lmodern
    fonts-cmu
    fonts-noto-core
    fonts-dejavu-core
    fonts-dejavu-extra
    fonts-liberation2
    fonts-freefont-ttf
    fonts-roboto-unhinted
    fonts-lato
    fonts-open-sans
    fonts-ebgaramond
    fonts-linuxlibertine
    fonts-junicode
    fonts-sil-gentium
    # The Arkandis Digital Foundry's families, one package each (named, not globbed: apt-get
    # no longer expands patterns in every release).
    fonts-adf-accanthis
    fonts-adf-baskervald
    fonts-adf-berenis
    fonts-adf-gillius
    fonts-adf-ikarius
    fonts-adf-irianis
    fonts-adf-libris
    fonts-adf-mekanus
    fonts-adf-oldania
    fonts-adf-romande
    fonts-adf-solothurn
    fonts-adf-switzera
    fonts-adf-tribun
    fonts-adf-universalis
    fonts-adf-verana
    fonts-croscore
    fonts-go
)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq

available=()
for package in "${PACKAGES[@]}"; do
    # A candidate version means this release carries the package. The output is read whole
    # (grep -q would stop reading early, and pipefail would take apt-cache's SIGPIPE for a
    # failure).
    candidate=$(apt-cache policy "$package" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
        available+=("$package")
    else
        echo "[glyph fonts] $package is not in this release's package lists; skipped" >&2
    fi
done

echo "[glyph fonts] installing ${#available[@]} of ${#PACKAGES[@]} font packages"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${available[@]}"
echo "[glyph fonts] done: $(find /usr/share/fonts -type f \( -iname '*.ttf' -o -iname '*.otf' \) | wc -l) TrueType/OpenType files under /usr/share/fonts"
