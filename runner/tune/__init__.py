"""Optuna tuning (``advrun tune``): studies over a recipe's or an attack's parameters.

Execution-only: imports optuna (and, through the objectives, torch). The spec side is
:mod:`runner.spec.tune`, pure like the rest of the spec.
"""
