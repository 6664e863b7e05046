"""From sampled parameters to a spec and a compiled run (pure: no torch, no optuna).

A trial is the spec narrowed to its target (one model, one recipe, one seed) with the parameters
written into the recipe (or, in attack mode, into a copy of the target attack), validated like a
file and compiled by :mod:`runner.compile`, so the same parameters always give the same run id.
"""

from __future__ import annotations

import copy
from typing import Any

from runner.compile import Run, compile_spec, resolve_attacks, resolve_threat, short_hash
from runner.errors import AdvrunError
from runner.spec.attacks import AttackBase
from runner.spec.checks import check_spec
from runner.spec.core import Spec
from runner.spec.tune import set_dotted


class Infeasible(AdvrunError):
    """Sampled parameters that make an invalid spec (e.g. steps x step_size < eps)."""


def _find(items: list[dict[str, Any]], name: str) -> int:
    return next(i for i, it in enumerate(items) if it.get("name") == name)


def target_seed(spec: Spec) -> int:
    t = spec.tune
    assert t is not None
    return spec.seeds[0] if t.target.seed is None else t.target.seed


def tuned_attack_name(spec: Spec) -> str:
    """The name of the searched attack added to the suite in attack mode (unique)."""
    t = spec.tune
    assert t is not None and t.target.attack is not None
    names = {a.name for a in spec.attacks}
    name, i = f"{t.target.attack}_tuned", 2
    while name in names:
        name, i = f"{t.target.attack}_tuned{i}", i + 1
    return name


def edits(spec: Spec, data: dict[str, Any], params: dict[str, Any]) -> list[tuple[tuple, Any]]:
    """(key path, value) edits that write ``params`` into the spec data."""
    t = spec.tune
    assert t is not None
    if t.mode == "train":
        ri = _find(data["recipes"], t.target.recipe)
        return [(("recipes", ri, *k.split(".")), v) for k, v in params.items()]
    base = copy.deepcopy(data["attacks"][_find(data["attacks"], t.target.attack)])
    base["name"] = tuned_attack_name(spec)
    kind_fields = _attack_model(base["kind"]).model_fields
    for k, v in params.items():
        if k.split(".")[0] in kind_fields:
            set_dotted(base, k, v)
    return [(("attacks", len(data["attacks"])), base)]


def _attack_model(kind: str) -> type:
    from runner.spec.attacks import ATTACK_SPECS

    return ATTACK_SPECS[kind]


def apply_edits(data: dict[str, Any], changes: list[tuple[tuple, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for path, value in changes:
        node = out
        for part in path[:-1]:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
        if isinstance(node, list) and path[-1] == len(node):
            node.append(value)
        else:
            node[path[-1]] = value
    return out


def trial_data(spec: Spec, data: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The spec data of one trial: narrowed to the target, parameters applied, no tune block."""
    t = spec.tune
    assert t is not None
    d = apply_edits(data, edits(spec, data, params))
    d.pop("tune", None)
    d["models"] = [d["models"][_find(d["models"], t.target.model)]]
    d["recipes"] = [d["recipes"][_find(d["recipes"], t.target.recipe)]]
    d["seeds"] = [target_seed(spec)]
    return d


def trial_spec(spec: Spec, data: dict[str, Any], params: dict[str, Any]) -> Spec:
    """Validate the trial's spec like a file; invalid combinations raise :class:`Infeasible`."""
    from pydantic import ValidationError

    d = trial_data(spec, data, params)
    try:
        s = Spec.model_validate(d)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise Infeasible(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    problems = check_spec(s)
    if problems:
        path, msg = problems[0]
        raise Infeasible(f"{'.'.join(map(str, path))}: {msg}")
    return s


def trial_run(spec: Spec, data: dict[str, Any], params: dict[str, Any]) -> Run:
    """The compiled run of a training trial (stable id: same parameters, same run)."""
    plan = compile_spec(trial_spec(spec, data, params))
    if len(plan.runs) != 1:  # the checks forbid sweeps in the target; guard anyway
        raise AdvrunError(f"a trial compiled into {len(plan.runs)} runs; expected one")
    return plan.runs[0]


def target_run(spec: Spec, data: dict[str, Any]) -> Run:
    """The matrix run whose model the attack mode attacks (the spec's own target run)."""
    t = spec.tune
    assert t is not None
    d = trial_data(spec, data, {})
    d["attacks"] = copy.deepcopy(data.get("attacks", []))
    plan = compile_spec(Spec.model_validate(d))
    if len(plan.runs) != 1:
        raise AdvrunError(
            f"the target {t.target.model}@{t.target.recipe} is {len(plan.runs)} runs (a sweep); "
            "attack mode needs one trained model: give the recipe single values"
        )
    return plan.runs[0]


def attack_config(spec: Spec, data: dict[str, Any], params: dict[str, Any]) -> AttackBase:
    """The resolved searched attack for ``params`` (validated like the suite).

    A searched ``loss`` is set on attacks that have one (apgd); for pgd, whose spec has no loss,
    :func:`runner.tune.attack.run_attack` takes it separately.
    """
    s = trial_spec(spec, data, params)
    threat = resolve_threat(s)
    name = tuned_attack_name(spec)
    cfg = next(a for a in resolve_attacks(s, threat) if a.name == name)
    if "loss" in params and "loss" in type(cfg).model_fields:
        cfg = cfg.model_copy(update={"loss": params["loss"]})
    return cfg


def study_fingerprint(spec: Spec, data: dict[str, Any]) -> str:
    """A hash of what a trial measures: trials of different fingerprints are not comparable.

    The searched keys, the trial count, the sampler and the pruner are left out, so raising
    ``trials`` or switching the pruner continues the same study.
    """
    t = spec.tune
    assert t is not None
    d = trial_data(spec, data, {})
    s = Spec.model_validate(d)  # before the searched keys go (a required one may be searched)
    searched = copy.deepcopy(d["recipes"][0])
    if t.mode == "attack":
        searched = copy.deepcopy(data["attacks"][_find(data["attacks"], t.target.attack)])
    for key in t.space:  # the base values of searched keys do not matter
        *head, last = key.split(".")
        node: Any = searched
        for part in head:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    threat = resolve_threat(s)
    certify = {"certify": s.certify.model_dump()} if s.certify is not None else {}
    return short_hash(
        {
            **certify,  # absent without certification: earlier studies keep their names
            "mode": t.mode,
            "target": t.target.model_dump(),
            "space": {k: v.model_dump() for k, v in sorted(t.space.items())},
            "goals": [g.model_dump() for g in t.goals],
            "model": d["models"][0],
            "searched": searched,
            "seed": target_seed(spec),
            "data": s.data.model_dump(),
            "threat": threat.to_json(),
            "attacks": [a.model_dump() for a in resolve_attacks(s, threat)],
            "eval": s.eval.model_dump(),
        },
        8,
    )


def study_name(spec: Spec, data: dict[str, Any]) -> str:
    t = spec.tune
    assert t is not None
    return t.study_name or f"{spec.name}-{t.mode}-{study_fingerprint(spec, data)}"
