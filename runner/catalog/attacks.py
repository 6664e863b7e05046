"""Attack kinds: their implementations (native and/or ART) as "module:attr" strings (pure).

meta keys: ``native`` / ``art`` the engines' implementations; ``minimal_norm`` attacks that
minimise the perturbation instead of staying within eps (their result is projected into the
threat model's ball); ``pgd_type`` the gradient attacks a robustness curve uses by default;
``norms`` the norms the kind supports per engine.
"""

from runner.registry import Registry

ATTACKS = Registry("attack kind")
_ART = "runner.attacks.art_attacks:"
_BOTH = {"native": ("linf", "l2"), "art": ("linf", "l2")}

ATTACKS.register(
    "fgsm", _ART + "fgsm", "fast gradient sign method (Goodfellow 2015)",
    native="runner.attacks.native:fgsm", art=_ART + "fgsm", norms=_BOTH,
)  # fmt: skip
ATTACKS.register(
    "pgd", _ART + "pgd", "projected gradient descent (Madry 2018)",
    native="runner.attacks.native:pgd", art=_ART + "pgd", norms=_BOTH, pgd_type=True,
)  # fmt: skip
ATTACKS.register(
    "apgd", _ART + "apgd", "auto-PGD with CE or DLR loss, untargeted or targeted (Croce 2020)",
    native="runner.attacks.kernels.apgd:apgd", art=_ART + "apgd", norms=_BOTH, pgd_type=True,
)  # fmt: skip
ATTACKS.register(
    "fab", "runner.attacks.kernels.fab:fab_t", "targeted fast adaptive boundary attack, FAB-T (Croce 2020)",
    native="runner.attacks.kernels.fab:fab_t", norms={"native": ("linf", "l2")}, minimal_norm=True,
)  # fmt: skip
ATTACKS.register(
    "square", _ART + "square", "black-box Square attack with a query budget (Andriushchenko 2020)",
    native="runner.attacks.kernels.square:square_linf", art=_ART + "square",
    norms={"native": ("linf",), "art": ("linf", "l2")},
)  # fmt: skip
ATTACKS.register(
    "cw_l2", _ART + "cw_l2", "Carlini & Wagner L2 (2017), minimal norm",
    art=_ART + "cw_l2", norms={"art": ("l2",)}, minimal_norm=True,
)  # fmt: skip
ATTACKS.register(
    "cw_linf", _ART + "cw_linf", "Carlini & Wagner Linf (2017), minimal norm",
    art=_ART + "cw_linf", norms={"art": ("linf",)}, minimal_norm=True,
)  # fmt: skip
ATTACKS.register(
    "deepfool", _ART + "deepfool", "DeepFool (Moosavi-Dezfooli 2016), minimal L2 norm",
    art=_ART + "deepfool", norms={"art": ("linf", "l2")}, minimal_norm=True,
)  # fmt: skip
ATTACKS.register(
    "autoattack", _ART + "autoattack",
    "AutoAttack: composition 'standard' (Croce & Hein 2020: APGD-CE, APGD-T, FAB-T, Square; "
    "native) or 'art' (ART's own AutoAttack defaults)",
    native="runner.attacks.runner:standard_components", art=_ART + "autoattack", norms=_BOTH,
)  # fmt: skip
