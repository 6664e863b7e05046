"""Heavy native attack kernels (APGD, FAB-T, Square), imported lazily by the attack plug-ins.

The shared projection and PGD loop live in :mod:`runner.attacks.native`.
"""
