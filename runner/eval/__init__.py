"""Evaluation: the attack suite and its worst case (cascade), curves, statistics, checklist."""
