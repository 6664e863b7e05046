"""Compile a validated spec into a plan of runs (pure: no torch, no I/O).

models x recipes x sweep values x seeds, each run fully resolved (every expression evaluated,
every default filled in) into a typed frozen :class:`Run`, named by a readable slug plus a short
content hash, so the same spec gives the same ids on any machine.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from runner import expr
from runner.spec import Spec
from runner.spec.attacks import ATTACK_SPECS, AttackBase
from runner.spec.certify import CertifySpec
from runner.spec.core import DataSpec, EvalSpec, ModelSpec
from runner.spec.poisoning import PoisoningSpec
from runner.spec.recipes import RECIPE_SPECS, SWEEPABLE, AdversarialRecipeBase, RecipeBase

HASH_LEN = 10
DEFENSE_KEY = "poisoning.defense"  # the sweep key of a swept defense (outside the recipe)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def short_hash(obj: Any, n: int = HASH_LEN) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _essential(m: BaseModel | None) -> dict[str, Any] | None:
    """What identifies a spec object in a hash: the values that differ from their defaults, so a
    new option added with a neutral default leaves every existing run id unchanged."""
    return None if m is None else m.model_dump(mode="json", exclude_defaults=True)


def _audit_eval(evaluation: EvalSpec) -> EvalSpec:
    """An audit's eval settings: escalation on unless the spec says (``enabled`` unset is the
    default: on for ``advrun eval``, off for trained runs)."""
    esc = evaluation.escalation
    if esc.enabled is not None:
        return evaluation
    return evaluation.model_copy(update={"escalation": esc.model_copy(update={"enabled": True})})


def _eval_json(evaluation: EvalSpec) -> dict[str, Any]:
    """The eval section as run.json holds it; ``escalation`` (run.json version 3) only when it
    differs from the defaults, so other runs' files keep their keys."""
    out = evaluation.model_dump()
    if "escalation" not in evaluation.model_dump(exclude_defaults=True):
        out.pop("escalation", None)
    return out


def _attack_json(attack: AttackBase) -> dict[str, Any]:
    """An attack as run.json holds it; ``eot_iter`` (EoT on PGD and APGD) only when it is not 1,
    so the files of runs without EoT keep their keys (and an older advrun reads them)."""
    out = attack.model_dump()
    if out.get("eot_iter") == 1:
        out.pop("eot_iter")
    return out


def _model_json(model: ModelSpec) -> dict[str, Any]:
    """A model as run.json holds it; ``weights`` (advrun eval's choice of a checkpoint's raw or
    EMA weights, run.json version 2) only when set, so other runs' files keep their keys."""
    out = model.model_dump()
    if out.get("weights") is None:
        out.pop("weights", None)
    return out


@dataclass(frozen=True)
class Threat:
    """The evaluation threat model, resolved: norm, eps in pixel units, the pixel range."""

    norm: str
    eps: float
    pixel_range: tuple[float, float]

    def covers(self, attack: AttackBase) -> bool:
        """Whether ``attack`` lies inside this threat model (same norm, eps not larger)."""
        return attack.norm == self.norm and float(attack.eps) <= self.eps * (1 + 1e-9)

    def to_json(self) -> dict[str, Any]:
        return {"norm": self.norm, "eps": self.eps, "pixel_range": list(self.pixel_range)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Threat:
        lo, hi = d["pixel_range"]
        return cls(str(d["norm"]), float(d["eps"]), (float(lo), float(hi)))


@dataclass(frozen=True)
class Run:
    """One training run plus its evaluation, fully resolved and typed.

    ``recipe`` is the recipe's spec model with sweeps fixed and eps/step sizes resolved to pixel
    units; ``attacks`` are the suite's spec models with eps, norm, step sizes and batch size
    resolved. Everything is immutable, so a run can be handed to another process as is.
    """

    id: str  # slug-hash, stable across machines
    slug: str  # model@recipe[sweep]@sSEED
    experiment: str
    data: DataSpec
    model: ModelSpec
    recipe: RecipeBase
    seed: int
    threat: Threat
    attacks: tuple[AttackBase, ...]
    eval: EvalSpec
    poisoning: PoisoningSpec | None = None
    certify: CertifySpec | None = None  # randomized-smoothing certification after the suite
    sweep: dict[str, Any] = field(default_factory=dict)  # the swept values of this run
    deterministic: bool = False  # how to execute, not what: outside the hashes
    threads: int | None = None
    train_hash: str = ""  # what training depends on: a changed value means a new run
    eval_hash: str = ""  # what evaluation depends on: a change re-evaluates without retraining

    @property
    def hyperparameters(self) -> dict[str, Any]:
        skip = {"name", "kind", "monitor"}
        return {k: v for k, v in self.recipe.as_data().items() if k not in skip}

    def to_json(self) -> dict[str, Any]:
        """The run as stored in run.json (every value, defaults included)."""
        out: dict[str, Any] = {
            "id": self.id,
            "slug": self.slug,
            "experiment": self.experiment,
            "train_hash": self.train_hash,
            "eval_hash": self.eval_hash,
            "seed": self.seed,
            "sweep": self.sweep,
            "data": self.data.model_dump(),
            "model": _model_json(self.model),
            "recipe": self.recipe.as_data(),
            "threat": self.threat.to_json(),
            "attacks": [_attack_json(a) for a in self.attacks],
            "eval": _eval_json(self.eval),
            "deterministic": self.deterministic,
            "threads": self.threads,
        }
        if self.poisoning is not None:
            out["poisoning"] = self.poisoning.model_dump()
        if self.certify is not None:
            out["certify"] = self.certify.model_dump()
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Run:
        """A run read back from its run.json."""
        return cls(
            id=d["id"],
            slug=d["slug"],
            experiment=d.get("experiment", ""),
            data=DataSpec.model_validate(d["data"]),
            model=ModelSpec.model_validate(d["model"]),
            recipe=RECIPE_SPECS[d["recipe"]["kind"]].model_validate(d["recipe"]),
            seed=int(d["seed"]),
            threat=Threat.from_json(d["threat"]),
            attacks=tuple(ATTACK_SPECS[a["kind"]].model_validate(a) for a in d["attacks"]),
            eval=EvalSpec.model_validate(d["eval"]),
            poisoning=PoisoningSpec.model_validate(d["poisoning"]) if d.get("poisoning") else None,
            certify=_certify_of(d),
            sweep=dict(d.get("sweep") or {}),
            train_hash=d.get("train_hash", ""),
            eval_hash=d.get("eval_hash", ""),
            deterministic=bool(d.get("deterministic", False)),
            threads=d.get("threads"),
        )


@dataclass(frozen=True)
class Audit:
    """An existing model evaluated against the spec's suite (``advrun eval``): no training."""

    id: str
    slug: str  # model@audit[checkpoint stem]
    experiment: str
    data: DataSpec
    model: ModelSpec
    threat: Threat
    attacks: tuple[AttackBase, ...]
    eval: EvalSpec
    checkpoint: str | None  # the file audited (None: a factory that loads its own weights)
    checkpoint_sha256: str | None
    eval_hash: str
    deterministic: bool = False
    threads: int | None = None
    certify: CertifySpec | None = None

    def to_json(self) -> dict[str, Any]:
        """The audit as stored in run.json."""
        out = {
            "id": self.id,
            "slug": self.slug,
            "kind": "audit",
            "experiment": self.experiment,
            "eval_hash": self.eval_hash,
            "data": self.data.model_dump(),
            "model": _model_json(self.model),
            "threat": self.threat.to_json(),
            "attacks": [_attack_json(a) for a in self.attacks],
            "eval": _eval_json(self.eval),
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "deterministic": self.deterministic,
            "threads": self.threads,
        }
        if self.certify is not None:
            out["certify"] = self.certify.model_dump()
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Audit:
        """An audit read back from its run.json."""
        return cls(
            id=d["id"],
            slug=d["slug"],
            experiment=d.get("experiment", ""),
            data=DataSpec.model_validate(d["data"]),
            model=ModelSpec.model_validate(d["model"]),
            threat=Threat.from_json(d["threat"]),
            attacks=tuple(ATTACK_SPECS[a["kind"]].model_validate(a) for a in d["attacks"]),
            eval=EvalSpec.model_validate(d["eval"]),
            checkpoint=d.get("checkpoint"),
            checkpoint_sha256=d.get("checkpoint_sha256"),
            eval_hash=d.get("eval_hash", ""),
            deterministic=bool(d.get("deterministic", False)),
            threads=d.get("threads"),
            certify=_certify_of(d),
        )


def _certify_of(d: dict[str, Any]) -> CertifySpec | None:
    return CertifySpec.model_validate(d["certify"]) if d.get("certify") else None


@dataclass(frozen=True)
class Plan:
    name: str
    runs: list[Run]
    threat: Threat
    attacks: tuple[AttackBase, ...]
    eval_hash: str = ""


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
