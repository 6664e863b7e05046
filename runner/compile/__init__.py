"""Compile a validated spec into a plan of runs (pure: no torch, no I/O).

:mod:`~runner.compile.records` holds what a plan is made of (``Threat``, ``Run``, ``Audit``,
``Plan`` and the hashes that name them); :mod:`~runner.compile.compiler` builds it from a spec.
"""

from runner.compile.compiler import (
    compile_audit,
    compile_spec,
    eval_hash_of,
    resolve_attack,
    resolve_attacks,
    resolve_threat,
    run_dirname,
)
from runner.compile.records import (
    DEFENSE_KEY,
    HASH_LEN,
    Audit,
    Plan,
    Run,
    Threat,
    _essential,
    canonical_json,
    short_hash,
)

__all__ = [
    "DEFENSE_KEY",
    "HASH_LEN",
    "Audit",
    "Plan",
    "Run",
    "Threat",
    "_essential",
    "canonical_json",
    "compile_audit",
    "compile_spec",
    "eval_hash_of",
    "resolve_attack",
    "resolve_attacks",
    "resolve_threat",
    "run_dirname",
    "short_hash",
]
