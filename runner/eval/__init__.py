"""Evaluation pieces: the worst-case attack cascade and robustness curves."""
