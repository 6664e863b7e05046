"""Attack kinds: one line per plug-in, naming its class as "module:attr" (pure; imports nothing).

Each class (a :class:`runner.attacks.base.Attack`) holds its spec model, its engines and norms,
its native implementation and its ART factory; see ``docs/examples/README.md``.
"""

from runner.registry import Registry

ATTACKS = Registry("attack kind")
# fmt: off
ATTACKS.register("fgsm", "runner.attacks.fgsm:FGSM", "fast gradient sign method (Goodfellow 2015)")
ATTACKS.register("pgd", "runner.attacks.pgd:PGD", "projected gradient descent (Madry 2018)")
ATTACKS.register("apgd", "runner.attacks.apgd:APGD", "auto-PGD with CE or DLR loss, untargeted or targeted (Croce 2020)")
ATTACKS.register("fab", "runner.attacks.fab:FAB", "targeted fast adaptive boundary attack, FAB-T (Croce 2020)")
ATTACKS.register("square", "runner.attacks.square:Square", "black-box Square attack with a query budget (Andriushchenko 2020)")
ATTACKS.register("cw_l2", "runner.attacks.cw_l2:CWL2", "Carlini & Wagner L2 (2017), minimal norm")
ATTACKS.register("cw_linf", "runner.attacks.cw_linf:CWLinf", "Carlini & Wagner Linf (2017), minimal norm")
ATTACKS.register("deepfool", "runner.attacks.deepfool:DeepFool", "DeepFool (Moosavi-Dezfooli 2016), minimal L2 norm")
ATTACKS.register(
    "autoattack", "runner.attacks.autoattack:AutoAttack",
    "AutoAttack: composition 'standard' (Croce & Hein 2020: APGD-CE, APGD-T, FAB-T, Square; "
    "native), 'rand' (theirs for randomized defenses: APGD-CE and APGD-DLR with 20 EoT passes; "
    "native) or 'art' (ART's own AutoAttack defaults)",
)
# fmt: on
