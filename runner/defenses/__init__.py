"""Poisoning defenses and the clean-label scenario: the steps of a poisoned run that train.

A detector (one plug-in file per kind, registered in :mod:`runner.catalog.defenses`) flags
suspected poisons from penultimate-layer features (:mod:`runner.defenses.features`) of a model
trained on the poisoned set; :mod:`runner.defenses.pipeline` trains that model, runs the
detector, measures it against the known poisons and keeps its outcome in the run directory, so
a killed run resumes without redoing it. :mod:`runner.defenses.clean_label` crafts the poisons
of the clean-label backdoor (Turner, Tsipras & Madry 2019), which need a trained model too.
"""
