"""``standard``: clean training with cross-entropy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.recipes.base import Recipe
from runner.spec.recipes import RecipeBase


class StandardRecipe(RecipeBase):
    """Clean training."""

    kind: Literal["standard"] = Field(description="clean training")


class StandardTraining(Recipe):
    """Clean training; the loop's default batch loss is already cross-entropy on clean inputs."""

    config = StandardRecipe
