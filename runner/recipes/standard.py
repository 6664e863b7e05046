"""``standard``: clean training with cross-entropy."""

from runner.recipes.base import Recipe


class StandardRecipe(Recipe):
    """Clean training; the loop's default batch loss is already cross-entropy on clean inputs."""
