"""Compile a validated spec into a plan of runs (pure: no torch, no I/O).

models x recipes x sweep values x seeds, each run fully resolved (every expression evaluated,
every default filled in) and named by a readable slug plus a short content hash, so the same
spec gives the same ids on any machine.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from runner import expr
from runner.spec import Spec
from runner.spec.recipes import SWEEPABLE, AdversarialRecipeBase

HASH_LEN = 10


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def short_hash(obj: Any, n: int = HASH_LEN) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Run:
    """One training run plus its evaluation, fully resolved."""

    id: str  # slug-hash, stable across machines
    slug: str  # model@recipe[sweep]@sSEED
    model: dict[str, Any]
    recipe: dict[str, Any]
    seed: int
    sweep: dict[str, Any]  # the swept values of this run (empty without sweeps)
    train_hash: str  # what training depends on: a changed value means a new run
    eval_hash: str  # what evaluation depends on: a change re-evaluates without retraining
    config: dict[str, Any] = field(repr=False)  # everything, as stored in run.json

    @property
    def hyperparameters(self) -> dict[str, Any]:
        skip = {"name", "kind", "monitor"}
        return {k: v for k, v in self.recipe.items() if k not in skip}


@dataclass(frozen=True)
class Plan:
    name: str
    runs: list[Run]
    threat: dict[str, Any]
    attacks: list[dict[str, Any]]


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    for part in head:
        d = d[part]
    d[last] = value


def resolve_threat(spec: Spec) -> dict[str, Any]:
    t = spec.threat
    return {"norm": t.norm, "eps": expr.evaluate(t.eps), "pixel_range": list(t.pixel_range)}


def resolve_attacks(spec: Spec, threat: dict[str, Any]) -> list[dict[str, Any]]:
    """Attacks with eps, norm, step sizes and batch size resolved to plain values."""
    out = []
    for attack in spec.attacks:
        a = attack.model_dump()
        a["eps"] = threat["eps"] if attack.eps is None else expr.evaluate(attack.eps, threat["eps"])
        a["norm"] = attack.norm or threat["norm"]
        a["batch_size"] = attack.batch_size or spec.eval.batch_size
        if "step_size" in a:
            a["step_size"] = expr.evaluate(a["step_size"], a["eps"])
        out.append(a)
    return out


def _resolve_recipe(recipe: dict[str, Any], threat_eps: float, adversarial: bool) -> dict[str, Any]:
    r = json.loads(json.dumps(recipe))  # deep copy of plain data
    if adversarial:
        r["eps"] = threat_eps if r.get("eps") is None else expr.evaluate(r["eps"], threat_eps)
        for key in ("step_size", "alpha", "init_eps"):  # step sizes are relative to the recipe eps
            if r.get(key) is not None:
                r[key] = expr.evaluate(r[key], r["eps"])
    return r


def compile_spec(spec: Spec) -> Plan:
    threat = resolve_threat(spec)
    attacks = resolve_attacks(spec, threat)
    data = spec.data.model_dump()
    evaluation = spec.eval.model_dump()
    extras = {k: getattr(spec, k).model_dump() for k in ("poisoning",) if getattr(spec, k, None)}
    eval_hash = short_hash({"attacks": attacks, "eval": evaluation, "threat": threat})
    runs: list[Run] = []
    for model in spec.models:
        m = model.model_dump()
        for recipe in spec.recipes:
            base = recipe.model_dump()
            swept = [
                (key, v)
                for key in SWEEPABLE
                if key.split(".")[0] in base and isinstance(v := _get(base, key), list)
            ]
            for combo in itertools.product(*(values for _, values in swept)):
                raw = json.loads(json.dumps(base))
                sweep = {}
                for (key, _), value in zip(swept, combo, strict=True):
                    _set(raw, key, value)
                    sweep[key] = value
                r = _resolve_recipe(raw, threat["eps"], isinstance(recipe, AdversarialRecipeBase))
                for seed in spec.seeds:
                    train = {
                        "data": data,
                        "model": m,
                        "recipe": r,
                        "seed": seed,
                        "threat": threat,
                        **extras,
                    }
                    th = short_hash(train)
                    suffix = (
                        "["
                        + ",".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in sweep.items())
                        + "]"
                    )
                    slug = f"{m['name']}@{r['name']}{suffix if sweep else ''}@s{seed}"
                    config = {
                        **train,
                        "attacks": attacks,
                        "eval": evaluation,
                        "experiment": spec.name,
                    }
                    runs.append(
                        Run(
                            id=f"{slug}-{th}",
                            slug=slug,
                            model=m,
                            recipe=r,
                            seed=seed,
                            sweep=sweep,
                            train_hash=th,
                            eval_hash=eval_hash,
                            config=config,
                        )
                    )
    return Plan(name=spec.name, runs=runs, threat=threat, attacks=attacks)


_UNSAFE = re.compile(r"[^A-Za-z0-9._@=,\[\]+-]")


def run_dirname(run_id: str) -> str:
    """A file-system-safe directory name for a run id (names are user text)."""
    name = _UNSAFE.sub("_", run_id).lstrip(".")
    if len(name) > 120:  # keep paths short; the hash keeps it unique
        name = name[:100] + "~" + short_hash(run_id, 16)
    return name or short_hash(run_id, 16)
