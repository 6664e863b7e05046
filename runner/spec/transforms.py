"""Spec models of what happens to pixels: training augmentation (``data.augment``) and the input
normalisation a model applies inside its forward pass (``models[].normalize``).

Both are pure data here; :mod:`runner.train.augment` and :mod:`runner.models.normalize` act on
them. :func:`check` holds the rules that need the whole spec (the data set's shape, the engine).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from runner.catalog import DATASETS, RECIPES
from runner.catalog.normalize import NORMALIZATIONS
from runner.registry import unknown_name_message
from runner.spec.base import StrictModel

Problem = tuple[tuple[Any, ...], str]
TRANSFORMS = ("random_crop", "horizontal_flip")


class RandomCropSpec(StrictModel):
    """Pad every side by ``padding`` pixels, then crop back to the original size at a random
    offset (the CIFAR augmentation of He et al. 2016)."""

    padding: int = Field(4, ge=1, description="pixels added on each side before the crop")
    mode: Literal["zero", "reflect"] = Field(
        "zero",
        description="zero: pad with black, the low end of pixel_range (torchvision's "
        "RandomCrop(padding=4), TRADES); reflect: mirror the border (Rice et al. 2020's code)",
    )


class HorizontalFlipSpec(StrictModel):
    """Mirror an image left-right with probability ``p``."""

    p: float = Field(0.5, ge=0, le=1, description="probability that an image is flipped")


class AugmentStep(StrictModel):
    """One transform: ``random_crop: {padding: 4}``, ``horizontal_flip: {p: 0.5}``, or just its
    name for the defaults."""

    random_crop: RandomCropSpec | None = Field(None, description="random crop after padding")
    horizontal_flip: HorizontalFlipSpec | None = Field(None, description="random mirror image")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v == "none":
                raise ValueError(
                    "'none' means no augmentation: write augment: none, or list transforms "
                    "without it"
                )
            if v not in TRANSFORMS:
                raise ValueError(unknown_name_message("transform", v, [*TRANSFORMS, "none"]))
            return {v: {}}
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> AugmentStep:
        named = [t for t in TRANSFORMS if getattr(self, t) is not None]
        if len(named) != 1:
            raise ValueError(
                "each augment item names exactly one transform, e.g. {random_crop: {padding: 4}}"
                f" or horizontal_flip; got {len(named)}"
            )
        return self

    @model_serializer(mode="wrap")
    def _only_the_named(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # {random_crop: {...}} rather than {random_crop: {...}, horizontal_flip: None}
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def name(self) -> str:
        return next(t for t in TRANSFORMS if getattr(self, t) is not None)


def _augment_list(v: Any) -> Any:
    if v is None or v == "none" or v == ["none"]:
        return []
    return v


AugmentList = Annotated[
    list[AugmentStep],
    BeforeValidator(
        _augment_list,
        json_schema_input_type=Literal["none"]
        | list[AugmentStep | Literal["random_crop", "horizontal_flip", "none"]],
    ),
]


class NormalizeSpec(StrictModel):
    """(x01 - mean) / std per channel inside the model's forward pass, where x01 is the pixel
    rescaled from pixel_range to [0, 1]; attacks and eps stay in pixel units."""

    mean: list[float] | str = Field(
        ...,
        description="per-channel means of [0, 1] pixels, or a preset name: "
        + ", ".join(NORMALIZATIONS),
    )
    std: list[float] | str | None = Field(
        None, description="per-channel standard deviations, or a preset (default: mean's preset)"
    )
    preset: str | None = Field(
        None, description="the preset the numbers came from (filled in from mean: NAME)"
    )

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = {"mean": v}
        if not isinstance(v, dict):
            return v
        v = dict(v)
        if v.get("preset") is not None and "mean" not in v:
            v["mean"] = v["preset"]
        preset = None
        if v.get("std") is None and isinstance(v.get("mean"), str):
            v["std"] = v["mean"]  # mean: cifar10 names both
        for key in ("mean", "std"):
            value = v.get(key)
            if isinstance(value, str):
                if value not in NORMALIZATIONS:
                    raise ValueError(
                        unknown_name_message("normalisation preset", value, list(NORMALIZATIONS))
                    )
                preset = preset or value
                value = list(NORMALIZATIONS[value][0 if key == "mean" else 1])
            v[key] = value
        if v.get("std") is None:
            raise ValueError(
                "normalize needs std with a list mean (or name a preset: mean: cifar10)"
            )
        v.setdefault("preset", preset)
        return v

    @field_validator("mean", "std")
    @classmethod
    def _values(cls, v: list[float], info) -> list[float]:
        if not v:
            raise ValueError(f"{info.field_name} needs one value per channel")
        if info.field_name == "std" and min(v) <= 0:
            raise ValueError(f"std {v} must be positive")
        if info.field_name == "mean" and not all(0 <= m <= 1 for m in v):
            raise ValueError(
                f"mean {v} is in [0, 1] pixel units (as torchvision's Normalize after ToTensor); "
                "divide 0-255 values by 255"
            )
        return v

    @model_validator(mode="after")
    def _same_length(self) -> NormalizeSpec:
        if len(self.mean) != len(self.std):
            raise ValueError(
                f"mean has {len(self.mean)} values but std has {len(self.std)}; give one per channel"
            )
        return self


def _normalize_field(v: Any) -> Any:
    return {"mean": v} if isinstance(v, str) else v


NormalizeField = Annotated[
    NormalizeSpec | None,
    BeforeValidator(_normalize_field, json_schema_input_type=NormalizeSpec | str | None),
]


# data-spec fields that only some data sets read (each data set lists its own in ``options``)
_DATASET_OPTIONS = ("labels", "image_size", "channels")


def known_shape(data: Any) -> tuple[int, int, int] | None:
    """(C, H, W) of the data set's images where the spec alone fixes it, else None."""
    return DATASETS.load(data.dataset).known_shape(data)


def check(spec: Any) -> Iterator[Problem]:
    """Augmentations and normalisations that cannot fit the data, or the engine."""
    data = spec.data
    source = DATASETS.load(data.dataset)
    for key in _DATASET_OPTIONS:
        if getattr(data, key, None) is not None and key not in source.options:
            owners = [n for n in DATASETS.names() if key in DATASETS.load(n).options]
            yield (
                ("data", key),
                f"data.{key} applies to dataset "
                + " or ".join(f"'{o}'" for o in owners)
                + f", not '{data.dataset}'",
            )
    shape = known_shape(data)
    for i, step in enumerate(data.augment):
        where = ("data", "augment", i)
        if step.horizontal_flip is not None and not source.flip:
            yield (
                where,
                f"data set '{data.dataset}' is marked flip: false: a mirrored image shows a "
                "different thing (digits, characters); remove horizontal_flip",
            )
        if step.random_crop is not None and shape is not None:
            pad, side = step.random_crop.padding, min(shape[1:])
            if pad >= side:
                yield (
                    (*where, "random_crop", "padding"),
                    f"crop padding {pad} is not smaller than the {shape[1]}x{shape[2]} images of "
                    f"'{data.dataset}': the crop could miss the image entirely; use at most "
                    f"{side - 1} (4 is usual for 32x32)",
                )
    if data.augment:
        for i, recipe in enumerate(spec.recipes):
            if recipe.engine == "art" and RECIPES.load(recipe.kind).art_trainer:
                yield (
                    ("recipes", i, "engine"),
                    "data.augment applies to the native training loop; ART's trainers draw "
                    "their own batches and would train on un-augmented images; use engine: "
                    "native or remove data.augment",
                )
    for i, model in enumerate(spec.models):
        norm = model.normalize
        if norm is None or shape is None:
            continue
        if len(norm.mean) not in (1, shape[0]):
            what = f"'{norm.preset}' normalisation" if norm.preset else "normalize"
            yield (
                ("models", i, "normalize"),
                f"{what} has {len(norm.mean)} channel(s) but the images of '{data.dataset}' "
                f"have {shape[0]}; "
                + (
                    "give one value"
                    if shape[0] == 1
                    else f"give {shape[0]} values (or one for all)"
                ),
            )
