"""Quality benchmark (issue 7): where the long tail hurts representations, and how much GH repairs.

``python -m benchmarks.quality run [--quick] [--workers 2] [--only PATTERN]`` runs the declared
plan (:mod:`.plan`) as resumable ``geoharmony pretrain`` subprocesses (:mod:`.runner`), adds
few-shot probes (:mod:`.probes`), and ``python -m benchmarks.quality report`` turns whatever has
finished into ``docs/results.md``, ``docs/results.json`` and ``docs/figures/`` (:mod:`.analysis`,
:mod:`.report`).
``--only`` (repeatable) runs a part of the plan, in the order of its patterns: name the longest runs
first so that both workers stay busy until the end of a sitting.
"""
