"""A data set plug-in in one file: grayscale images in a CSV file, one per row, the label first
and then the H x W pixel values (0-255) of a square image, under a header line: the format of
Kaggle's Digit Recognizer (MNIST) ``train.csv``.

Register it with one line (in ``runner/catalog/data.py``, or at run time as the test does):

    DATASETS.register("csv_images", "my_dataset:CsvImages", "square grayscale images in a CSV")

and use it in a spec: ``data: {dataset: csv_images, path: data/train.csv}``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from runner.data.source import DataSource
from runner.errors import AdvrunError

if TYPE_CHECKING:  # no NumPy or pandas at import: `advrun validate` loads this class
    from runner.data import Dataset, DataSpecLike


class CsvImages(DataSource):
    """Square grayscale images from a CSV file (``data.path``); advrun splits off the test set."""

    needs = "path"  # validation refuses the spec without data.path, at its file:line:col
    flip = False  # handwritten digits: a mirrored digit is another thing (no horizontal_flip)

    @staticmethod
    def load(spec: DataSpecLike) -> Dataset:
        import numpy as np
        import pandas as pd

        from runner.data import make_dataset

        path = Path(spec.path)
        if not path.is_file():
            raise AdvrunError(f"csv_images: {path} is not a file; set data.path to the CSV file")
        table = pd.read_csv(path).to_numpy()
        side = math.isqrt(table.shape[1] - 1)
        if side * side != table.shape[1] - 1:
            raise AdvrunError(
                f"csv_images: {path} has {table.shape[1] - 1} pixel columns, not a square number "
                "(28 x 28 = 784 for MNIST); expected the label, then the pixels of one image"
            )
        x = (table[:, 1:].astype(np.float32) / 255.0).reshape(-1, 1, side, side)
        y = table[:, 0].astype(np.int64)
        # the checks every loader gets: pixels in [0, 1], labels 0..K-1, shapes; and the data hash
        return make_dataset("csv_images", x, y, where=str(path))
