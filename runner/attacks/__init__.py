"""Attacks: native on-device loops (training, validation, fast evaluation) and ART's (reference)."""
