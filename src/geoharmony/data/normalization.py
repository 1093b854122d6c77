"""Per-channel normalisation statistics of each source, and evaluation-time normalisation.

A source's statistics are a field of its description (:mod:`geoharmony.data.catalog`); sources
without their own (list files, image folders) are normalised with ImageNet's.
"""

from __future__ import annotations

from geoharmony.data import catalog
from geoharmony.data.catalog import SourceTable
from geoharmony.data.pixels import IMAGENET_STATS, Stats, normalize_only

__all__ = ["IMAGENET_STATS", "NORM_STATS", "Stats", "norm_stats", "normalize_only"]

# ``{name: (mean, std)}`` of every source with statistics of its own, plus ``"imagenet"``: a
# live view of the catalog, kept for the code and scripts that index it by name.
NORM_STATS: SourceTable[Stats] = SourceTable(lambda s: s.stats, extra={"imagenet": IMAGENET_STATS})


def norm_stats(source: str) -> Stats:
    """``(mean, std)`` of a source's training images; ImageNet's for file-backed sources (and
    for names the catalog does not know)."""
    found = catalog.find_source(source)
    if found is None or found.stats is None:
        return IMAGENET_STATS
    return found.stats
