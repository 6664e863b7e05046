"""The HTML report, its machine-readable companions (results.json, model cards) and the gate.

``collect`` reads output directories, ``tables``/``sections``/``narrative`` turn them into plain
data (``build``), ``figures``/``svg`` draw inline SVG plots, ``render`` writes the files, and
``gate`` checks a spec's thresholds for ``advrun run`` and ``advrun eval``; ``experiment``
rebuilds an output directory's shared files (plan, results, curves, report) under its lock.
"""
