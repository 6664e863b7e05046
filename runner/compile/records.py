"""The compiled plan's records: a :class:`Plan` of typed frozen :class:`Run` (and :class:`Audit`)
records under a resolved :class:`Threat`, with the canonical JSON and content hashes that name
them (pure: no torch, no I/O). :mod:`runner.compile.compiler` builds them from a spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from runner.spec.attacks import ATTACK_SPECS, AttackBase
from runner.spec.certify import CertifySpec
from runner.spec.core import DataSpec, EvalSpec, ModelSpec
from runner.spec.poisoning import PoisoningSpec
from runner.spec.recipes import RECIPE_SPECS, RecipeBase

HASH_LEN = 10
DEFENSE_KEY = "poisoning.defense"  # the sweep key of a swept defense (outside the recipe)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def short_hash(obj: Any, n: int = HASH_LEN) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


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
            **_evaluated_fields(d),
            recipe=RECIPE_SPECS[d["recipe"]["kind"]].model_validate(d["recipe"]),
            seed=int(d["seed"]),
            poisoning=PoisoningSpec.model_validate(d["poisoning"]) if d.get("poisoning") else None,
            sweep=dict(d.get("sweep") or {}),
            train_hash=d.get("train_hash", ""),
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
            **_evaluated_fields(d),
            checkpoint=d.get("checkpoint"),
            checkpoint_sha256=d.get("checkpoint_sha256"),
        )


def _evaluated_fields(d: dict[str, Any]) -> dict[str, Any]:
    """The fields a run.json of a run and of an audit share (what is evaluated, and how)."""
    return {
        "id": d["id"],
        "slug": d["slug"],
        "experiment": d.get("experiment", ""),
        "data": DataSpec.model_validate(d["data"]),
        "model": ModelSpec.model_validate(d["model"]),
        "threat": Threat.from_json(d["threat"]),
        "attacks": tuple(ATTACK_SPECS[a["kind"]].model_validate(a) for a in d["attacks"]),
        "eval": EvalSpec.model_validate(d["eval"]),
        "certify": CertifySpec.model_validate(d["certify"]) if d.get("certify") else None,
        "eval_hash": d.get("eval_hash", ""),
        "deterministic": bool(d.get("deterministic", False)),
        "threads": d.get("threads"),
    }


@dataclass(frozen=True)
class Plan:
    name: str
    runs: list[Run]
    threat: Threat
    attacks: tuple[AttackBase, ...]
    eval_hash: str = ""
