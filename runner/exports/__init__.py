"""Versioned adversarial data (``advrun export-adv``).

:mod:`.source` loads a stored run (its typed config, data and a checkpoint) once; :mod:`.attack`
regenerates the adversarial test set of an attack of its suite; :mod:`.train` the training-time
adversarial examples of the final epoch; :mod:`.files` writes the npz files (byte-reproducible),
the run's ``exports.json`` and the folder's ``manifest.json``.
"""
