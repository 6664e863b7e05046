"""Where :class:`~runner.passes.PassCounter` lived before it became a base utility.

Kept only for ``runner/recipes/base.py``, which is being reshaped on another branch; once that
lands, it imports ``runner.passes`` and this module goes.
"""

from runner.passes import PassCounter

__all__ = ["PassCounter"]
