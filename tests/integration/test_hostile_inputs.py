"""Hostile and broken input through the real CLI: one table, one row per way an input can be bad.

Every row ends the same way: exit code 2, a one-line message that says what and where
(``spec.yaml:LINE:COL`` when it comes from a spec) and what to do, no traceback, and nothing new
on disk: the whole sandbox (the working directory, the data, the output directory) is
snapshotted before and compared after. Rows that are about the environment failing mid-run (a
full disk) have their own tests below: the run fails with a message, what was finished stays
intact, and the rerun resumes.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from runner.cli import main
from runner.execute.prepare import _load_split
from runner.models import build_model

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
name: hostile
seeds: [0]
data: {dataset: digits, limit: 200}
threat: {norm: linf, eps: 0.1, pixel_range: [0, 1]}
models:
  - {name: m, arch: mlp, kwargs: {hidden: [8]}}
recipes:
  - {name: std, kind: standard, epochs: 1, batch_size: 64, monitor: {n: 20, steps: 2}}
attacks:
  - {name: fgsm, kind: fgsm, engine: native}
eval: {n: 40, bootstrap: 20, checklist: false}
"""
DATA_LINE = "data: {dataset: digits, limit: 200}"
MODEL_LINE = "  - {name: m, arch: mlp, kwargs: {hidden: [8]}}"
RECIPE_LINE = (
    "  - {name: std, kind: standard, epochs: 1, batch_size: 64, monitor: {n: 20, steps: 2}}"
)


class Payload:
    """A pickle payload: unpickling it creates ``marker`` (if it ever runs, the test sees it)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Sandbox:
    """The test's working directory; everything a row writes or reads lives under it."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / "PAYLOAD_RAN"

    def spec(self, text: str = BASE, name: str = "spec.yaml") -> str:
        (self.root / name).write_text(text, encoding="utf-8")
        return name

    def spec_bytes(self, data: bytes) -> str:
        (self.root / "spec.yaml").write_bytes(data)
        return "spec.yaml"

    def replace(self, old: str, new: str) -> str:
        assert old in BASE, old
        return self.spec(BASE.replace(old, new, 1))

    def npz(self, name: str = "d.npz", **arrays) -> str:
        np.savez(self.root / name, **arrays)
        return name

    def npz_spec(self, extra: str = "", **arrays) -> list[str]:
        path = self.npz(**arrays)
        self.replace(DATA_LINE, f"data: {{dataset: npz, path: {path}{extra}}}")
        return ["run", "spec.yaml", "-q"]

    def checkpoint(self, obj, name: str = "ck.pt") -> str:
        torch.save(obj, self.root / name)
        return name

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(self.root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in self.root.rglob("*")
            if p.is_file()
        }


def images(n: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 8, 8), dtype=np.float32)


def labels(n: int = 300) -> np.ndarray:
    return (np.arange(n) % 10).astype(np.int64)


def mlp_state() -> dict[str, torch.Tensor]:
    return build_model("mlp", (1, 8, 8), 10, {"hidden": [8]}).state_dict()


EVAL = ("eval", "spec.yaml", "-q", "--checkpoint")
VALIDATE = ("validate", "spec.yaml")


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# ------------------------------------------------------------------------------------ the table
# Each row: a setup that writes the bad input into the sandbox and returns the argv, the texts
# the message must contain, and the spec line it must point at (None: not from a spec).

Setup = Callable[[Sandbox], list[str]]


def row(id_: str, setup: Setup, *texts: str, line: int | None = None):
    return pytest.param(setup, texts, line, id=id_)


def edit(old: str, new: str, argv: tuple[str, ...] = VALIDATE) -> Setup:
    """A row whose spec is BASE with ``old`` replaced by ``new``."""

    def setup(sb: Sandbox) -> list[str]:
        sb.replace(old, new)
        return list(argv)

    return setup


def text(spec: str, argv: tuple[str, ...] = VALIDATE) -> Setup:
    """A row whose spec is ``spec`` ({marker} becomes the payload marker's path)."""

    def setup(sb: Sandbox) -> list[str]:
        sb.spec(spec.replace("{marker}", str(sb.marker)))
        return list(argv)

    return setup


def cli(*argv: str) -> Setup:
    return lambda sb: list(argv)


def npz(extra: str = "", **arrays: Callable[[], np.ndarray]) -> Setup:
    """A row training on an npz file of the given arrays (built lazily, per test)."""
    return lambda sb: sb.npz_spec(extra, **{k: f() for k, f in arrays.items()})


RUN = ("run", "spec.yaml", "-q")


def _huge(sb: Sandbox) -> list[str]:
    sb.spec(BASE + ("# padding\n" * 120_000))
    return list(VALIDATE)


def _bad_utf8(sb: Sandbox) -> list[str]:
    sb.spec_bytes(BASE.replace("name: m,", "name: m\xff,").encode("latin-1"))
    return list(VALIDATE)


def _unreadable_npz(sb: Sandbox) -> list[str]:
    """A file that exists but cannot be read: mode 000, or for root (whom modes do not stop)
    Linux's /proc/self/mem, whose first page is unmapped (EIO)."""
    if os.geteuid() != 0:
        argv = sb.npz_spec(x=images(), y=labels())
        os.chmod(sb.root / "d.npz", 0)
        return argv
    if not Path("/proc/self/mem").is_file():
        pytest.skip("runs as root without /proc/self/mem: no file root cannot read")
    sb.replace(DATA_LINE, "data: {dataset: npz, path: /proc/self/mem}")
    return list(RUN)


def _not_npz(sb: Sandbox) -> list[str]:
    sb.replace(DATA_LINE, "data: {dataset: npz, path: d.npz}")
    (sb.root / "d.npz").write_text("just text")
    return list(RUN)


def _pickled_npz(sb: Sandbox) -> list[str]:
    y = np.empty(300, dtype=object)
    y[:] = [Payload(str(sb.marker))] * 300
    return sb.npz_spec(x=images(), y=y)  # numpy pickles object arrays when saving


def _with(array: np.ndarray, index, value) -> np.ndarray:
    array = array.copy()
    array[index] = value
    return array


def _nan_pixels() -> np.ndarray:
    return _with(images(), (5, 0, 0), np.nan)


def _skipping_labels() -> np.ndarray:
    return _with(labels(), slice(0, 3), 42)  # 0-9 plus three 42s


def _test_missing_class(sb: Sandbox) -> list[str]:
    y_test = labels(60)
    y_test[y_test == 3] = 4
    return sb.npz_spec(x_train=images(), y_train=labels(), x_test=images(60, 1), y_test=y_test)


def _ckpt_pickle(sb: Sandbox) -> list[str]:
    return [*EVAL, sb.checkpoint({"fc.weight": Payload(str(sb.marker))})]


def _ckpt_raw_pickle(sb: Sandbox) -> list[str]:
    (sb.root / "ck.pt").write_bytes(pickle.dumps(Payload(str(sb.marker))))
    return [*EVAL, "ck.pt"]


def _ckpt_truncated(sb: Sandbox) -> list[str]:
    sb.checkpoint(mlp_state())
    data = (sb.root / "ck.pt").read_bytes()
    (sb.root / "ck.pt").write_bytes(data[: len(data) // 2])
    return [*EVAL, "ck.pt"]


def _ckpt_text(sb: Sandbox) -> list[str]:
    (sb.root / "ck.pt").write_text("hello")
    return [*EVAL, "ck.pt"]


def _ckpt_zip_not_torch(sb: Sandbox) -> list[str]:
    with zipfile.ZipFile(sb.root / "ck.pt", "w") as z:
        z.writestr("hello.txt", "not a checkpoint")
    return [*EVAL, "ck.pt"]


def _ckpt_legacy_pickle(sb: Sandbox) -> list[str]:
    """torch's pre-1.6 format, read since issue 18: its pickles are refused all the same."""
    payload = {"fc.weight": Payload(str(sb.marker))}
    torch.save(payload, sb.root / "ck.pt", _use_new_zipfile_serialization=False)
    return [*EVAL, "ck.pt"]


def _ckpt_legacy_module(sb: Sandbox) -> list[str]:
    model = build_model("mlp", (1, 8, 8), 10, {"hidden": [8]})
    torch.save(model, sb.root / "ck.pt", _use_new_zipfile_serialization=False)
    return [*EVAL, "ck.pt"]


def _ckpt_legacy_cut(sb: Sandbox) -> list[str]:
    torch.save(mlp_state(), sb.root / "ck.pt", _use_new_zipfile_serialization=False)
    data = (sb.root / "ck.pt").read_bytes()
    (sb.root / "ck.pt").write_bytes(data[: len(data) - 64])
    return [*EVAL, "ck.pt"]


def _ckpt_torchscript(sb: Sandbox) -> list[str]:
    torch.jit.script(build_model("mlp", (1, 8, 8), 10, {"hidden": [8]})).save(sb.root / "ck.pt")
    return [*EVAL, "ck.pt"]


def _ckpt_written(data: bytes, name: str = "ck.pt") -> Setup:
    def setup(sb: Sandbox) -> list[str]:
        (sb.root / name).write_bytes(data)
        return [*EVAL, name]

    return setup


def _ckpt_npz(sb: Sandbox) -> list[str]:
    np.savez(sb.root / "ck.npz", **{k: v.numpy() for k, v in mlp_state().items()})
    return [*EVAL, "ck.npz"]


def _ckpt_safetensors_cut(sb: Sandbox) -> list[str]:
    from safetensors.torch import save_file

    save_file(mlp_state(), sb.root / "ck.safetensors")
    data = (sb.root / "ck.safetensors").read_bytes()
    (sb.root / "ck.safetensors").write_bytes(data[: len(data) - 40])
    return [*EVAL, "ck.safetensors"]


def _ckpt_raw_and_ema(sb: Sandbox) -> list[str]:
    return [*EVAL, sb.checkpoint({"model": mlp_state(), "ema": mlp_state(), "epoch": 3})]


def _ckpt_no_ema(sb: Sandbox) -> list[str]:
    return [*EVAL, sb.checkpoint({"state_dict": mlp_state()}), "--weights", "ema"]


def _factory(arch: str, *flags: str) -> Setup:
    def setup(sb: Sandbox) -> list[str]:
        (sb.root / "userzoo.py").write_text(
            "from os import system  # re-exported: its module is posix\n"
            "class NotAModel:\n    def __init__(self, **kw):\n        pass\n"
        )
        sb.replace(MODEL_LINE, f"  - {{name: m, arch: '{arch}'}}")
        return [*RUN, *flags]

    return setup


def _a_file_at(name: str, out: str) -> Setup:
    def setup(sb: Sandbox) -> list[str]:
        (sb.root / name).write_text("x")
        return [*RUN, "-o", out]

    return setup


TAG = "seeds: !!python/object/apply:os.system ['touch {marker}']"
BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
)
VALUES = ", ".join(str(i) for i in range(1, 31))
SWEEP = f"  - {{name: std, kind: standard, epochs: [{VALUES}], optimizer: {{lr: [{VALUES}]}}}}"
SEEDS = "seeds: [" + ", ".join(map(str, range(20))) + "]"
OPT = "epochs: 1, optimizer: "

ROWS = [
    # YAML
    row("yaml-python-tag", text(BASE.replace("seeds: [0]", TAG)),
        "'!!python/object/apply:os.system' is not allowed", line=2),
    row("yaml-custom-tag", edit("seeds: [0]", "seeds: !custom 3"), "'!custom' is not allowed",
        line=2),
    row("yaml-alias-bomb", text(BASE + BOMB + "\n"), "more than 100000 YAML nodes", line=12),
    row("yaml-recursive-alias", text(BASE + "loop: &a [*a]\n"), "recursive", line=12),
    row("yaml-too-large", _huge, "more than 1048576 bytes (1 MiB), the limit"),
    row("yaml-invalid-utf8", _bad_utf8, "byte 0xff is not valid UTF-8", line=6),
    row("yaml-not-a-mapping", text("- a\n- b\n"), "top level is a list", line=1),
    row("yaml-empty", text(""), "the spec is empty", line=1),
    row("yaml-deep", text(BASE + "extra: " + "[" * 5000 + "]" * 5000 + "\n"),
        "nests more than 50 levels", line=12),
    row("yaml-duplicate-key", text(BASE + "seeds: [1]\n"), "duplicate key 'seeds'", line=12),
    row("yaml-syntax", edit("seeds: [0]", "seeds: [0"), "YAML syntax error"),
    # values
    row("epochs-1e9-float", edit("epochs: 1,", "epochs: 1e9,"),
        "expected a whole number, got 1e+09", line=8),
    row("epochs-1e9", edit("epochs: 1,", "epochs: 1000000000,"), "more than 10,000", line=8),
    row("epochs-string", edit("epochs: 1,", 'epochs: "5",'),
        "expected a whole number, got the text '5'", "remove the quotes", line=8),
    row("batch-0", edit("batch_size: 64", "batch_size: 0"), "recipes.0.batch_size",
        "greater than or equal to 1", line=8),
    row("batch-string", edit("batch_size: 64", "batch_size: '64'"), "remove the quotes", line=8),
    row("eps-1e300", edit("eps: 0.1,", "eps: 1e300,"), "larger than the pixel range", line=4),
    row("eps-inf", edit("eps: 0.1,", "eps: .inf,"), "not a finite number", line=4),
    row("eps-overflow", edit("eps: 0.1,", "eps: '1e308*10',"), "not a finite number", line=4),
    row("eps-negative", edit("eps: 0.1,", "eps: -0.1,"), "must be positive", line=4),
    row("n-1e12", edit("n: 40,", "n: 1000000000000,"), "eval.n",
        "less than or equal to 100000000", line=11),
    row("n-0", edit("n: 40,", "n: 0,"), "eval.n", line=11),
    row("lr-nan", edit("epochs: 1,", OPT + "{lr: .nan},"), "not a finite number", line=8),
    row("lr-zero", edit("epochs: 1,", OPT + "{lr: 0},"), "must be positive", line=8),
    row("weight-decay-negative", edit("epochs: 1,", OPT + "{weight_decay: -1},"),
        "weight_decay -1 must be >= 0", line=8),
    row("seed-negative", edit("seeds: [0]", "seeds: [-1]"), "seeds.0",
        "greater than or equal to 0", line=2),
    row("pixel-range-inf", edit("pixel_range: [0, 1]", "pixel_range: [0, .inf]"),
        "threat.pixel_range.1", "finite", line=4),
    row("name-nul", edit("name: m,", 'name: "a\\0b",'), "U+0000 (NUL)", line=6),
    row("name-newline", edit("name: m,", 'name: "a\\nb",'), "U+000A (newline)", line=6),
    row("name-escape", edit("name: std,", 'name: "\\e[31mred",'), "U+001B (ESC)", line=8),
    row("name-bidi", edit("name: fgsm,", 'name: "a\\u202eb",'), "U+202E", line=10),
    row("spec-name-path", edit("name: hostile", "name: ../../etc"), "should match pattern",
        line=1),
    row("description-nul", text(BASE + 'description: "ok\\nbut \\0"\n'), "U+0000 (NUL)",
        "newlines and tabs are allowed", line=12),
    row("output-absolute", text(BASE + "output: {dir: /tmp/advrun-out}\n"), "is absolute",
        "-o DIR", line=12),
    row("output-climbs", text(BASE + "output: {dir: out/../../x}\n"), "climbs out", "-o DIR",
        line=12),
    row("output-override-absolute", cli(*VALIDATE, "output.dir=/tmp/advrun-out"), "is absolute",
        "override 'output.dir=/tmp/advrun-out':1:12"),
    row("too-many-runs", text(BASE.replace(RECIPE_LINE, SWEEP).replace("seeds: [0]", SEEDS)),
        "expands into 18,000 runs", "limit of 10,000", line=8),
    row("model-too-large", edit("hidden: [8]", "hidden: [1000000000]", RUN),
        "parameters, more than the limit of 1,000,000,000"),
    # data
    row("npz-missing", edit(DATA_LINE, "data: {dataset: npz, path: nope.npz}", RUN),
        "npz file not found", "data.path"),
    row("npz-unreadable", _unreadable_npz, "cannot read", "as a .npz archive"),
    row("npz-not-an-archive", _not_npz, "cannot read", "as a .npz archive"),
    row("npz-object-array", _pickled_npz, "object (pickled) array", "refuses"),
    row("mnist-missing", edit(DATA_LINE, "data: {dataset: mnist, root: no-such-folder}", RUN),
        "no-such-folder"),
    row("npz-length-mismatch", npz(x=images, y=lambda: labels(299)),
        "300 train images but 299 train labels"),
    row("pixels-nan", npz(x=_nan_pixels, y=labels), "NaN or infinite"),
    row("pixels-inf", npz(x=lambda: _with(images(), (5, 0, 0), np.inf), y=labels),
        "NaN or infinite"),
    row("pixels-outside-range", npz(x=lambda: images() * 255, y=labels), "outside [0, 1]",
        "scale them"),
    row("labels-negative", npz(x=images, y=lambda: labels() - 1), "negative label -1"),
    row("labels-non-integer", npz(x=images, y=lambda: labels() + 0.5), "non-integer labels"),
    row("labels-skip-classes", npz(x=images, y=_skipping_labels),
        "label(s) 42 (3 example(s))", "class(es) 10-41", "data.num_classes: 43"),
    row("labels-beyond-declared", npz(", num_classes: 10", x=images, y=_skipping_labels),
        "labels 42", "out of range for data.num_classes 10"),
    row("too-few-examples", npz(x=lambda: images(12), y=lambda: labels(12)),
        "cannot carve a stratified test split", "data.test_fraction"),
    row("class-missing-from-test", _test_missing_class,
        "test split (60 examples) has no examples of class(es) 3"),
    # checkpoints (advrun eval --checkpoint; a run's own are tested below)
    row("ckpt-malicious-pickle", _ckpt_pickle, "refused to load", "nothing in it was run"),
    row("ckpt-malicious-raw-pickle", _ckpt_raw_pickle, "not a PyTorch checkpoint",
        "a plain Python pickle", "nothing in it was run"),
    row("ckpt-malicious-legacy-pickle", _ckpt_legacy_pickle, "refused to load",
        "nothing in it was run"),
    row("ckpt-legacy-full-module", _ckpt_legacy_module,
        "a full pickled nn.Module (runner.models.mlp.MLP), not a state_dict",
        "nothing in it was run", "torch.save(m.state_dict(), 'state_dict.pt')"),
    row("ckpt-legacy-cut", _ckpt_legacy_cut, "a damaged torch legacy (pre-1.6) checkpoint",
        "download or copy it again"),
    row("ckpt-torchscript", _ckpt_torchscript, "a TorchScript archive",
        "torch.jit.load('ck.pt').state_dict()"),
    row("ckpt-npz", _ckpt_npz, "a numpy .npz archive", "torch.from_numpy"),
    row("ckpt-hdf5", _ckpt_written(b"\x89HDF\r\n\x1a\n" + bytes(200), "ck.h5"),
        "a Keras/HDF5 file", "tf2onnx"),
    row("ckpt-onnx", _ckpt_written(b"\x08\x07\x12\x07pytorch\x1a\x032.0" + bytes(40), "ck.onnx"),
        "an ONNX model", "onnx2torch.convert"),
    row("ckpt-safetensors-cut", _ckpt_safetensors_cut, "a damaged safetensors file"),
    row("ckpt-raw-and-ema", _ckpt_raw_and_ema, "raw weights under 'model' and EMA weights under "
        "'ema'", "--weights ema|raw"),
    row("ckpt-no-ema", _ckpt_no_ema, "no EMA weights in it"),
    row("ckpt-truncated", _ckpt_truncated, "a truncated zip archive", "not a PyTorch checkpoint"),
    row("ckpt-text", _ckpt_text, "not a PyTorch checkpoint"),
    row("ckpt-zip-not-torch", _ckpt_zip_not_torch,
        "a zip archive that is not a torch checkpoint (it holds hello.txt)"),
    row("ckpt-not-a-state-dict", lambda sb: [*EVAL, sb.checkpoint({"lr": 0.1, "epoch": 3})],
        "expected a state_dict"),
    row("ckpt-wrong-architecture",
        lambda sb: [*EVAL, sb.checkpoint(build_model("small_cnn", (1, 8, 8), 10).state_dict())],
        "does not fit model 'm'", "missing"),
    row("ckpt-missing", cli(*EVAL, "nope.pt"), "no such file"),
    # user code
    row("factory-without-allow-import", _factory("os:system"),
        "would import module 'os', which is not allowed"),
    row("factory-os-system-with-os-star", _factory("os:system", "--allow-import", "os*"),
        "resolves to posix.system", "module 'posix'", "does not cover"),
    row("factory-reexported-builtin", _factory("userzoo:system", "--allow-import", "userzoo"),
        "resolves to posix.system"),
    row("factory-not-a-module-class", _factory("userzoo:NotAModel", "--allow-import", "userzoo"),
        "not a torch.nn.Module"),
    # environment (mid-run failures: see the tests below)
    row("output-is-a-file", _a_file_at("out", "out"), "output directory out is a file"),
    row("output-under-a-file", _a_file_at("out", "out/sub"), "out is a file, not a folder"),
]  # fmt: skip


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> Sandbox:
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    _load_split.cache_clear()  # data files of different rows share relative names
    sb = Sandbox(root)
    sb.spec()
    return sb


def _check_message(err: str, texts: tuple[str, ...], line: int | None) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("spec is invalid")]
    assert len(lines) == 1, err  # one line (a spec error comes under a one-line header)
    message = lines[0]
    for text in texts:
        assert text in message, f"{text!r} not in {message!r}"
    if line is not None:
        m = re.match(r"spec\.yaml:(\d+):(\d+): ", message)
        assert m and int(m.group(1)) == line, message
    return message


@pytest.mark.parametrize(("setup", "texts", "line"), ROWS)
def test_hostile_input_is_refused(sandbox, capsys, setup, texts, line):
    argv = setup(sandbox)
    if "--checkpoint" in argv or argv[0] == "run":
        argv = [*argv, "--device", "cpu"]
    before = sandbox.snapshot()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    _check_message(err, texts, line)
    assert sandbox.snapshot() == before  # nothing new, nothing changed
    assert not sandbox.marker.exists()  # no payload ran
    assert not (sandbox.root / "reports").exists()


def test_the_payloads_are_live(tmp_path):
    """The pickles above would run if loaded unsafely: the rows prove something."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(str(marker))))
    assert marker.exists()
    marker.unlink()
    torch.save({"fc.weight": Payload(str(marker))}, tmp_path / "ck.pt")
    torch.load(tmp_path / "ck.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()  # the legacy (pre-1.6) format, which advrun eval reads since issue 18
    payload = {"fc.weight": Payload(str(marker))}
    torch.save(payload, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.load(tmp_path / "legacy.pt", weights_only=False)
    assert marker.exists()


EVAL_CPU = ["eval", "spec.yaml", "--checkpoint", "ck.pt", "-q", "--device", "cpu"]


@pytest.mark.parametrize(
    ("argv", "texts", "legacy"),
    [
        (["validate", "spec.yaml"], ("not allowed",), False),
        (EVAL_CPU, ("refused",), False),
        (EVAL_CPU, ("refused", "nothing in it was run"), True),  # torch's pre-1.6 format
        (["run", "spec.yaml", "-q", "--device", "cpu"], ("NaN or infinite",), False),
    ],
    ids=["yaml-tag", "malicious-checkpoint", "malicious-legacy-checkpoint", "nan-pixels"],
)
def test_no_traceback_in_a_real_process(sandbox, argv, texts, legacy):
    """A few representative rows in a subprocess: stderr is the message and nothing else."""
    if argv[0] == "validate":
        sandbox.replace(
            "seeds: [0]", f"seeds: !!python/object/apply:os.system ['touch {sandbox.marker}']"
        )
    elif argv[0] == "eval":
        payload = {"fc.weight": Payload(str(sandbox.marker))}
        torch.save(payload, sandbox.root / "ck.pt", _use_new_zipfile_serialization=not legacy)
    else:
        sandbox.npz_spec(x=_with(images(), (5, 0, 0), np.nan), y=labels())
    before = sandbox.snapshot()
    out = subprocess.run(
        [sys.executable, "-m", "runner", *argv],
        capture_output=True,
        text=True,
        cwd=sandbox.root,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    _check_message(out.stderr, texts, None)
    assert sandbox.snapshot() == before and not sandbox.marker.exists()


# ------------------------------------------------------------------ a run's own checkpoints


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory) -> Path:
    """A finished one-run experiment (2 epochs: state.pt, last.pt and best.pt exist)."""
    root = tmp_path_factory.mktemp("store")
    spec = root / "spec.yaml"
    spec.write_text(BASE.replace("epochs: 1,", "epochs: 2,"))
    assert main(["run", str(spec), "-o", str(root / "out"), "-q", "--device", "cpu"]) == 0
    return root / "out"


def _resumable(sandbox: Sandbox, store: Path, state: str) -> Path:
    """A copy of the store whose run is ``state`` again (metrics gone), for a rerun to resume."""
    sandbox.spec(BASE.replace("epochs: 1,", "epochs: 2,"))
    out = sandbox.root / "out"
    shutil.copytree(store, out)
    (run_dir,) = (out / "runs").iterdir()
    (run_dir / "metrics.json").unlink()
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({**status, "state": state}))
    return run_dir


@pytest.mark.parametrize(
    ("state", "damage", "texts"),
    [
        (
            "running",
            "truncate:state.pt",
            ("run checkpoint", "state.pt", "not a PyTorch checkpoint"),
        ),
        ("running", "pickle:state.pt", ("run checkpoint", "refused to load")),
        ("running", "arch:state.pt", ("does not fit this run",)),
        ("trained", "arch:best.pt", ("best.pt does not fit this run's model", "missing")),
        ("trained", "truncate:best.pt", ("best.pt", "truncated")),
    ],
    ids=[
        "state-truncated",
        "state-malicious",
        "state-wrong-arch",
        "best-wrong-arch",
        "best-truncated",
    ],
)
def test_a_runs_own_damaged_checkpoint_is_refused(
    sandbox, trained_store, capsys, state, damage, texts
):
    run_dir = _resumable(sandbox, trained_store, state)
    how, name = damage.split(":")
    path = run_dir / "checkpoints" / name
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif how == "pickle":
        torch.save({"model": Payload(str(sandbox.marker))}, path)
    else:  # a small_cnn's weights where the mlp's belong
        cnn = build_model("small_cnn", (1, 8, 8), 10).state_dict()
        obj = torch.load(path, weights_only=True) if name == "state.pt" else None
        torch.save({**obj, "model": cnn} if obj else cnn, path)
    before = sandbox.snapshot()
    assert main(["run", "spec.yaml", "-o", "out", "-q", "--device", "cpu"]) == 2
    message = _check_message(capsys.readouterr().err, texts, None)
    assert "--force" in message  # what to do
    after = sandbox.snapshot()
    assert set(after) == set(before)  # no new file; the run's log and status may be touched
    assert all(after[k] == before[k] for k in before if not k.startswith("out/"))
    assert not sandbox.marker.exists()
    # --force retrains from scratch and succeeds
    assert main(["run", "spec.yaml", "-o", "out", "-q", "--device", "cpu", "--force"]) == 0


# --------------------------------------------------------------------------------- environment


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_unwritable_output_directory(sandbox, capsys):
    """Refused before the first write: read-only tmpfs as root (chmod does not stop root),
    a mode-0555 folder otherwise."""
    locked = sandbox.root / "locked"
    if os.geteuid() == 0:
        if not _mount_tmpfs(locked, "ro,size=1m"):
            pytest.skip("running as root without permission to mount a read-only tmpfs")
        expected = "Read-only file system"
    else:
        locked.mkdir()
        locked.chmod(0o555)
        expected = "Permission denied"
    try:
        before = sandbox.snapshot()
        assert main(["run", "spec.yaml", "-q", "--device", "cpu", "-o", "locked/out"]) == 2
        _check_message(capsys.readouterr().err, ("cannot write", expected, "-o"), None)
        assert sandbox.snapshot() == before
    finally:
        if os.path.ismount(locked):
            _umount(locked)
        else:
            locked.chmod(0o755)


TWO_RUNS = BASE.replace("seeds: [0]", "seeds: [0, 1]").replace("epochs: 1,", "epochs: 2,")


def _no_temp_files(root: Path) -> None:
    assert not [p for p in root.rglob("*.tmp")], "a half-written temporary file was left behind"


def test_disk_full_mid_run_keeps_finished_work_and_resumes(sandbox, capsys, monkeypatch):
    """The disk fills while the second run saves its epoch-2 weights (a patched commit raising
    ENOSPC): exit 2 with a message, the first run's results and the second's epoch 1 intact,
    and the rerun resumes the second run at epoch 2."""
    import runner.fsio as fsio

    sandbox.spec(TWO_RUNS)
    real_commit = fsio._commit
    saves = []

    def commit(tmp, path):
        if path.name == "last.pt" and "@s1-" in str(path):
            saves.append(path)
            if len(saves) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_commit(tmp, path)

    monkeypatch.setattr(fsio, "_commit", commit)
    assert main(["run", "spec.yaml", "-o", "out", "-q", "--device", "cpu"]) == 2
    message = _check_message(capsys.readouterr().err, ("cannot write", "last.pt"), None)
    assert "no space left" in message and "rerun" in message
    runs = {p.name.split("@")[-1][:2]: p for p in (sandbox.root / "out" / "runs").iterdir()}
    done = (runs["s0"] / "metrics.json").read_bytes()
    assert json.loads(done)["results"]
    assert torch.load(runs["s1"] / "checkpoints" / "state.pt", weights_only=True)["epoch"] == 1
    _no_temp_files(sandbox.root)

    monkeypatch.setattr(fsio, "_commit", real_commit)  # space freed
    assert main(["run", "spec.yaml", "-o", "out", "-q", "--device", "cpu"]) == 0
    assert (runs["s0"] / "metrics.json").read_bytes() == done  # skipped, not redone
    assert "resumed at epoch 1" in (runs["s1"] / "log.txt").read_text()
    results = pd.read_csv(sandbox.root / "out" / "results.csv")
    assert results["seed"].nunique() == 2
    _no_temp_files(sandbox.root)


def test_disk_full_on_a_real_tmpfs(sandbox, capsys):
    """The same on a real, small tmpfs (needs root and mount): the first run finishes, then the
    disk is filled to a few kilobytes; the second run fails with a message, the first stays
    intact, and after space is freed the rerun finishes."""
    disk = sandbox.root / "disk"
    if not _mount_tmpfs(disk, "size=8m"):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        sandbox.spec(TWO_RUNS)
        argv = ["run", "spec.yaml", "-o", "disk/out", "-q", "--device", "cpu"]
        assert main([*argv, "--only", "*@s0-*", "--no-report"]) == 0
        (first,) = (disk / "out" / "runs").iterdir()
        done = (first / "metrics.json").read_bytes()
        outside = {k: v for k, v in sandbox.snapshot().items() if not k.startswith("disk/")}
        st = os.statvfs(disk)
        filler = disk / "filler"
        with open(filler, "wb") as f:  # leave 24 KiB: a few small files, no checkpoint
            f.write(b"\0" * (st.f_bavail * st.f_frsize - 24 * 1024))
        capsys.readouterr()
        assert main(argv) == 2
        message = _check_message(capsys.readouterr().err, ("cannot write",), None)
        assert "no space left" in message.lower()
        assert (first / "metrics.json").read_bytes() == done
        _no_temp_files(disk)
        filler.unlink()
        assert main(argv) == 0
        assert (first / "metrics.json").read_bytes() == done
        assert pd.read_csv(disk / "out" / "results.csv")["seed"].nunique() == 2
        now = {k: v for k, v in sandbox.snapshot().items() if not k.startswith("disk/")}
        assert now == outside  # nothing written outside the output directory
    finally:
        _umount(disk)


# ------------------------------------------------------------------------------------ security

EVIL = '<script>alert("x")</script> \'q\' & "dq"'


def _strings(obj) -> set[str]:
    if isinstance(obj, dict):
        return set().union(*map(_strings, obj.keys()), *map(_strings, obj.values()))
    if isinstance(obj, list):
        return set().union(set(), *map(_strings, obj))
    return {obj} if isinstance(obj, str) else set()


def test_user_text_is_escaped_in_every_output(sandbox, capsys):
    """<script>, quotes, & and newlines in every user field that reaches an output (spec
    description, model/recipe/attack names, the data path, a checkpoint's file name): the HTML
    holds no raw markup from them, every JSON file parses and round-trips the exact text, the
    CSV too, and every run directory is a plain name inside runs/."""
    model, recipe, attack = f"../{EVIL}/m", f"{EVIL} r", f"{EVIL} a"
    description = f"{EVIL}\nsecond line"
    data = "ev<script>'q'&\"dq\".npz"  # file names cannot hold the / of </script>
    np.savez(sandbox.root / data, x=images(), y=labels())
    q = lambda s: json.dumps(s)  # noqa: E731 - a JSON string is a YAML double-quoted scalar
    spec = (
        BASE.replace(DATA_LINE, f"data: {{dataset: npz, path: {q(data)}}}")
        .replace("{name: m,", f"{{name: {q(model)},")
        .replace("{name: std,", f"{{name: {q(recipe)},")
        .replace("{name: fgsm,", f"{{name: {q(attack)},")
        + f"description: {q(description)}\n"
    )
    sandbox.spec(spec)
    outside = sandbox.snapshot()
    assert main(["run", "spec.yaml", "-o", "out", "-q", "--device", "cpu"]) == 0
    (run_dir,) = (sandbox.root / "out" / "runs").iterdir()
    ckpt = "ck<script>'q'&\"dq\".pt"
    shutil.copy(run_dir / "checkpoints" / "best.pt", sandbox.root / ckpt)
    outside[ckpt] = sandbox.snapshot()[ckpt]
    argv = ["eval", "spec.yaml", "--checkpoint", ckpt, "-o", "out", "-q", "--device", "cpu"]
    assert main(argv) == 0
    assert main(["report", "out"]) == 0
    capsys.readouterr()

    out = sandbox.root / "out"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert "'q'" not in html and '"dq"' not in html  # quotes are entities too (attribute-safe)
    texts = _strings(json.loads((out / "results.json").read_text(encoding="utf-8")))
    assert {model, recipe, attack, description} <= texts
    assert any(t.endswith(ckpt) for t in texts) and any(t.endswith(data) for t in texts)
    runs = sorted(p for p in (out / "runs").iterdir())
    assert len(runs) == 2  # the trained run and the audit
    for d in runs:
        assert d.parent == out / "runs" and re.fullmatch(r"[A-Za-z0-9._@=,\[\]+~-]+", d.name)
        card = json.loads((d / "model_card.json").read_text(encoding="utf-8"))
        assert card["model"] == model and attack in _strings(card)
        assert json.loads((d / "metrics.json").read_text(encoding="utf-8"))["model"] == model
    df = pd.read_csv(out / "results.csv")
    assert set(df["model"]) == {model} and set(df["recipe"]) == {recipe, "audit"}
    assert attack in set(df["attack"])
    now = sandbox.snapshot()
    assert {k: v for k, v in now.items() if not k.startswith("out/")} == outside
