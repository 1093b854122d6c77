"""Quality benchmark (issue 7): where the long tail hurts representations, and how much GH repairs.

``python -m benchmarks.quality run [--quick] [--workers 2] [--only PATTERN]`` runs the declared
plan (:mod:`.plan`) as resumable ``geoharmony pretrain`` subprocesses (:mod:`.runner`), adds
few-shot probes (:mod:`.probes`), and ``python -m benchmarks.quality report`` turns whatever has
finished into the generated part of ``docs/results.md`` (below the hand-written reading, which it
keeps verbatim), ``docs/results.json``, ``docs/figures/`` and the package's study-noise file
``src/geoharmony/eval/study_noise.json`` (:mod:`.report`: the numbers from :mod:`.analysis`,
:mod:`.stats`, :mod:`.goal` and :mod:`.selection`, counted in the tables of :mod:`.tables` and
:mod:`.recipe` and the few computed bullets of :mod:`.summary`, laid out by :mod:`.sections`,
drawn by :mod:`.figures`).
``--only`` (repeatable) runs a part of the plan, in the order of its patterns: name the longest runs
first so that both workers stay busy until the end of a sitting. ``--core`` keeps the plan's core
(:data:`.plan.CORE_PRIMARY`): enough for every verdict of the report, about a third of its cost.
Each finished run's results are committed as one record (:mod:`.records`); the report reads the
records only, so it is regenerated exactly on any clone.
"""
