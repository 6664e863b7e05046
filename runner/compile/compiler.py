"""Compile a validated spec into a plan of runs (pure: no torch, no I/O).

models x recipes x sweep values x seeds, each run fully resolved (every expression evaluated,
every default filled in) into a typed frozen :class:`Run`, named by a readable slug plus a short
content hash, so the same spec gives the same ids on any machine.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from runner import expr
from runner.compile.records import (
    DEFENSE_KEY,
    Audit,
    Plan,
    Run,
    Threat,
    _audit_eval,
    _essential,
    short_hash,
)
from runner.spec import Spec
from runner.spec.attacks import AttackBase
from runner.spec.certify import CertifySpec
from runner.spec.core import EvalSpec, ModelSpec
from runner.spec.recipes import SWEEPABLE, AdversarialRecipeBase


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _get(d: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key, or None where a block on the way is off (``awp: null``)."""
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    for part in head:
        d = d[part]
    d[last] = value


def resolve_threat(spec: Spec) -> Threat:
    t = spec.threat
    lo, hi = t.pixel_range
    return Threat(t.norm, expr.evaluate(t.eps), (float(lo), float(hi)))


def resolve_attack(attack: AttackBase, threat: Threat, batch_size: int) -> AttackBase:
    """``attack`` with eps, norm, step size and batch size resolved to plain values."""
    eps = threat.eps if attack.eps is None else expr.evaluate(attack.eps, threat.eps)
    update: dict[str, Any] = {
        "eps": eps,
        "norm": attack.norm or threat.norm,
        "batch_size": attack.batch_size or batch_size,
    }
    if "step_size" in type(attack).model_fields:
        update["step_size"] = expr.evaluate(attack.step_size, eps)  # type: ignore[attr-defined]
    return attack.model_copy(update=update)


def resolve_attacks(spec: Spec, threat: Threat) -> tuple[AttackBase, ...]:
    return tuple(resolve_attack(a, threat, spec.eval.batch_size) for a in spec.attacks)


def _resolve_recipe(
    recipe: dict[str, Any], threat_eps: float, adversarial: bool, relative: tuple[str, ...] = ()
) -> dict[str, Any]:
    """eps in pixel units, and the fields given relative to it (``relative``: step sizes...)."""
    r = json.loads(json.dumps(recipe))  # deep copy of plain data
    if adversarial:
        r["eps"] = threat_eps if r.get("eps") is None else expr.evaluate(r["eps"], threat_eps)
        for key in relative:
            if r.get(key) is not None:
                r[key] = expr.evaluate(r[key], r["eps"])
    return r


def eval_hash_of(
    threat: Threat,
    attacks: tuple[AttackBase, ...],
    evaluation: EvalSpec,
    certify: CertifySpec | None = None,
) -> str:
    """What evaluation depends on: a change re-evaluates trained runs without retraining."""
    what: dict[str, Any] = {
        "attacks": [_essential(a) for a in attacks],
        "eval": _essential(evaluation),
        "threat": threat.to_json(),
    }
    if certify is not None:  # absent: the hash of a spec without certification is unchanged
        what["certify"] = _essential(certify)
    return short_hash(what)


def compile_spec(spec: Spec) -> Plan:
    """The spec's runs: models x recipe variants (sweep values, swept defenses) x seeds."""
    threat = resolve_threat(spec)
    attacks = resolve_attacks(spec, threat)
    eval_hash = eval_hash_of(threat, attacks, spec.eval, spec.certify)
    shared = {"threat": threat, "attacks": attacks, "eval_hash": eval_hash}
    runs = [
        _run(spec, model, r, sweep, poisoning, seed, **shared)
        for model in spec.models
        for recipe in spec.recipes
        for r, sweep, poisoning in _recipe_variants(spec, recipe, threat.eps)
        for seed in spec.seeds
    ]
    return Plan(name=spec.name, runs=runs, threat=threat, attacks=attacks, eval_hash=eval_hash)


def _recipe_variants(spec: Spec, recipe: Any, eps: float) -> list[tuple[Any, dict, Any]]:
    """(resolved recipe, sweep values, poisoning block) for each combination of the recipe's
    swept values and, when ``poisoning.defense`` is a list, each defense."""
    p = spec.poisoning
    defenses = [p.defense] if p is not None and isinstance(p.defense, list) else []
    base = recipe.model_dump()
    swept = [
        (key, v)
        for key in SWEEPABLE
        if key.split(".")[0] in base and isinstance(v := _get(base, key), list)
    ]
    adversarial = isinstance(recipe, AdversarialRecipeBase)
    relative = recipe.eps_relative if adversarial else ()
    variants = []
    for combo in itertools.product(*(values for _, values in swept), *defenses):
        raw = json.loads(json.dumps(base))
        sweep = {}
        for (key, _), value in zip(swept, combo, strict=False):
            _set(raw, key, value)
            sweep[key] = value
        poisoning = spec.poisoning
        if defenses:  # swept: each run filters with one defense
            sweep[DEFENSE_KEY] = combo[-1]
            poisoning = poisoning.model_copy(update={"defense": combo[-1]})
        resolved = _resolve_recipe(raw, eps, adversarial, relative)
        variants.append((type(recipe).model_validate(resolved), sweep, poisoning))
    return variants


def _run(
    spec: Spec, model: Any, r: Any, sweep: dict, poisoning: Any, seed: int, *, threat: Any,
    attacks: list, eval_hash: str,
) -> Run:  # fmt: skip
    """One run; its id is the slug plus the hash of everything its training depends on."""
    train = {
        "data": _essential(spec.data),
        "model": _essential(model),
        "recipe": _essential(r),
        "seed": seed,
        "threat": threat.to_json(),
        "poisoning": _essential(poisoning),
    }
    th = short_hash(train)
    suffix = ",".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in sweep.items())
    slug = f"{model.name}@{r.name}{f'[{suffix}]' if sweep else ''}@s{seed}"
    return Run(
        id=f"{slug}-{th}",
        slug=slug,
        experiment=spec.name,
        data=spec.data,
        model=model,
        recipe=r,
        seed=seed,
        threat=threat,
        attacks=attacks,
        eval=spec.eval,
        poisoning=poisoning,
        certify=spec.certify,
        sweep=sweep,
        train_hash=th,
        eval_hash=eval_hash,
        deterministic=spec.deterministic,
        threads=spec.threads,
    )


def compile_audit(
    spec: Spec, plan: Plan, model: ModelSpec, checkpoint: str | None, sha: str | None, tag: str
) -> Audit:
    """The audit of ``model`` (weights from ``checkpoint``, whose stem is ``tag``)."""
    ident = {
        "model": _essential(model),
        "data": _essential(spec.data),
        "threat": plan.threat.to_json(),
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha,
    }
    slug = f"{model.name}@audit[{tag}]"
    return Audit(
        id=f"{slug}-{short_hash(ident)}",
        slug=slug,
        experiment=spec.name,
        data=spec.data,
        model=model,
        threat=plan.threat,
        attacks=plan.attacks,
        eval=_audit_eval(spec.eval),
        checkpoint=checkpoint,
        checkpoint_sha256=sha,
        eval_hash=plan.eval_hash,
        deterministic=spec.deterministic,
        threads=spec.threads,
        certify=spec.certify,
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._@=,\[\]+-]")


def run_dirname(run_id: str) -> str:
    """A file-system-safe directory name for a run id (names are user text)."""
    name = _UNSAFE.sub("_", run_id).lstrip(".")
    if len(name) > 120:  # keep paths short; the hash keeps it unique
        name = name[:100] + "~" + short_hash(run_id, 16)
    return name or short_hash(run_id, 16)
