"""The valid spec that spec tests mutate (line numbers matter: tests assert them)."""

BASE = """\
name: t
seeds: [0]
data: {dataset: digits}
threat: {norm: linf, eps: 0.1, pixel_range: [0, 1]}
models:
  - {name: cnn, arch: small_cnn}
recipes:
  - {name: std, kind: standard, epochs: 1}
  - {name: madry, kind: pgd, epochs: 1, eps: 0.1, step_size: 0.025, steps: 7}
attacks:
  - {name: fgsm, kind: fgsm}
  - {name: pgd20, kind: pgd, steps: 20, step_size: eps/4}
"""
