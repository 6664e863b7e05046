"""The data set plug-in contract: one class per data set, registered by one catalog line.

A data set class (a :class:`DataSource` in ``runner/data/<name>.py``, named in
:mod:`runner.catalog.data`) holds what validation needs as class attributes and its loader as
``load(spec) -> Dataset``. Its module imports no torch or NumPy at its top: ``advrun validate``
loads the class for its attributes and checks; ``load`` imports what it needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from runner.data import Dataset, DataSpecLike

Problem = tuple[tuple[Any, ...], str]


class DataSource:
    """One data set.

    ``needs`` the data-spec field that must be set (``root``, ``path``); ``shape`` the (C, H, W)
    of every image when the format fixes it (validation checks augmentations and normalisations
    against it); ``flip = False`` where a horizontal flip changes what an image shows (digits,
    characters, house numbers), so ``horizontal_flip`` is refused; ``options`` the data-spec
    fields only this data set reads (``labels``, ``image_size``...), refused for the others.
    """

    needs: ClassVar[str | None] = None
    shape: ClassVar[tuple[int, int, int] | None] = None
    flip: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def known_shape(cls, data: Any) -> tuple[int, int, int] | None:
        """(C, H, W) of the images where the data spec alone fixes it, else None."""
        return cls.shape

    @classmethod
    def check(cls, data: Any) -> Iterator[Problem]:
        """This data set's own problems with the data spec ``data`` (key paths from the root)."""
        return iter(())

    @staticmethod
    def load(spec: DataSpecLike) -> Dataset:
        """The arrays, checked by :func:`runner.data.make_dataset`."""
        raise NotImplementedError
