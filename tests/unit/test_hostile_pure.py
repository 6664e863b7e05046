"""The pure pieces behind the hostile-input table (tests/integration/test_hostile_inputs.py):
YAML limits, text and path rules, bounds, class checks, atomic writes that fail. No torch."""

from __future__ import annotations

import errno
import sys

import numpy as np
import pytest
from spec_base import BASE

import runner.fsio as fsio
from runner.data import Splits, check_split_classes, conform_classes, make_dataset
from runner.errors import AdvrunError, SpecError
from runner.spec import load_spec
from runner.spec.base import bad_character
from runner.spec.checks import count_runs
from runner.yamlio import MAX_DEPTH, load_yaml, parse_scalar


def test_yaml_depth_is_limited_without_recursion_error():
    limit = sys.getrecursionlimit()
    text = "a: " + "[" * (limit * 2) + "]" * (limit * 2)
    with pytest.raises(SpecError, match=f"more than {MAX_DEPTH} levels"):
        load_yaml(text, "deep.yaml")
    load_yaml("a: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2), "ok.yaml")


def test_deep_override_values_are_limited_too():
    with pytest.raises(SpecError, match="levels"):
        parse_scalar("{a: " * 200 + "1" + "}" * 200, "override 'x=...'")


@pytest.mark.parametrize("text", ["a: &a [*a]", "a: &a {b: {c: *a}}"])
def test_recursive_aliases_are_refused(text):
    with pytest.raises(SpecError, match="recursive structure"):
        load_yaml(text, "loop.yaml")


def test_deep_alias_chains_count_as_depth():
    inner = "[" * 40 + "1" + "]" * 40
    text = f"a: &a {inner}\nb: " + "[" * 40 + "*a" + "]" * 40
    with pytest.raises(SpecError, match="levels"):
        load_yaml(text, "alias.yaml")


@pytest.mark.parametrize(
    ("text", "multiline", "bad"),
    [
        ("plain name", False, None),
        ("<script>'\"&", False, None),  # markup is allowed: it is escaped in every output
        ("a\nb", False, "\n"),
        ("a\nb\tc", True, None),
        ("a\0b", True, "\0"),
        ("a\rb", True, "\r"),
        ("\x1b[31m", False, "\x1b"),
        ("a\u2028b", True, "\u2028"),
        ("a\u202eb", False, "\u202e"),
        ("a\ud800", False, "\ud800"),
    ],
)
def test_bad_characters(text, multiline, bad):
    assert bad_character(text, multiline) == bad


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("out", True),
        ("a/b/../c", True),
        (".", True),
        ("/abs", False),
        ("..", False),
        ("../x", False),
        ("a/../../x", False),
        ("~/x", False),
        ("", False),
    ],
)
def test_output_dir_stays_inside_the_working_tree(write_spec, value, ok):
    path = write_spec(BASE + f"output: {{dir: '{value}'}}\n")
    if ok:
        assert load_spec(path).spec.output.dir == value
    else:
        with pytest.raises(SpecError, match="output.dir"):
            load_spec(path)


def test_num_classes_unset_keeps_run_ids(write_spec):
    """data.num_classes is new: unset, it leaves the run ids as they were; set, it is training
    input and moves them."""
    from runner.compile import _essential, compile_spec

    spec = load_spec(write_spec()).spec
    assert "num_classes" not in _essential(spec.data)  # what run ids hash
    ids = {r.id for r in compile_spec(spec).runs}
    declared = BASE.replace("{dataset: digits}", "{dataset: digits, num_classes: 10}")
    assert not {r.id for r in compile_spec(load_spec(write_spec(declared)).spec).runs} & ids


def test_count_runs_multiplies_sweeps_and_seeds(write_spec):
    text = BASE.replace("seeds: [0]", "seeds: [0, 1, 2]").replace(
        "kind: standard, epochs: 1}",
        "kind: standard, epochs: [1, 2], optimizer: {lr: [0.1, 0.01]}}",
    )
    spec = load_spec(write_spec(text)).spec
    assert count_runs(spec) == 1 * (4 + 1) * 3


def _ds(y, num_classes=None, y_test=None):
    x = np.zeros((len(y), 1, 2, 2), np.float32)
    xt = None if y_test is None else np.zeros((len(y_test), 1, 2, 2), np.float32)
    yt = None if y_test is None else np.asarray(y_test, np.int64)
    return make_dataset("t", x, np.asarray(y, np.int64), xt, yt, num_classes=num_classes)


def test_labels_that_skip_classes_name_the_labels():
    y = [0, 1, 2, 0, 1, 2, 9, 9]
    with pytest.raises(AdvrunError, match=r"label\(s\) 9 \(2 example\(s\)\).*class\(es\) 3-8"):
        conform_classes(_ds(y), None)
    assert conform_classes(_ds(y), 10).num_classes == 10
    with pytest.raises(AdvrunError, match="out of range for data.num_classes 5"):
        conform_classes(_ds(y), 5)
    with pytest.raises(AdvrunError, match="has 10 classes"):
        conform_classes(_ds([0, 1], num_classes=10), 12)  # a source with its own count
    assert conform_classes(_ds([0, 1, 2]), None).num_classes == 3


def test_every_class_in_every_split():
    ds = _ds([0, 1, 2] * 4)
    y = np.asarray
    empty = np.zeros((0, 1, 2, 2), np.float32)
    x = lambda n: np.zeros((n, 1, 2, 2), np.float32)  # noqa: E731
    ok = Splits(x(3), y([0, 1, 2]), empty, y([], np.int64), x(3), y([0, 1, 2]))
    check_split_classes(ds, ok)
    bad = Splits(x(3), y([0, 1, 2]), x(2), y([0, 1]), x(3), y([0, 1, 2]))
    with pytest.raises(AdvrunError, match=r"validation split \(2 examples\).*class\(es\) 2"):
        check_split_classes(ds, bad)
    bad = Splits(x(2), y([0, 1]), empty, y([], np.int64), x(3), y([0, 1, 2]))
    with pytest.raises(AdvrunError, match="raise data.limit"):
        check_split_classes(ds, bad, limit=2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.5, 1.5])
def test_make_dataset_checks_pixels(bad):
    x = np.zeros((4, 1, 2, 2), np.float32)
    x[1, 0, 0, 0] = bad
    with pytest.raises(AdvrunError, match="NaN or infinite|outside \\[0, 1\\]"):
        make_dataset("t", x, np.array([0, 1, 0, 1]))


def test_class_names_are_one_line_text():
    x = np.zeros((2, 1, 2, 2), np.float32)
    with pytest.raises(AdvrunError, match="control characters"):
        make_dataset("t", x, np.array([0, 1]), class_names=("cat", "dog\x1b[2J"))
    with pytest.raises(AdvrunError, match="2 classes"):
        make_dataset("t", x, np.array([0, 1]), class_names=("cat",))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    fsio.write_text(target, "old\n")

    def full(tmp, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsio, "_commit", full)
    with pytest.raises(fsio.WriteError, match="no space left on the device.*rerun"):
        fsio.write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_write_errors_say_what_to_do():
    denied = fsio.write_error("x", OSError(errno.EROFS, "Read-only file system"))
    assert "Read-only file system" in str(denied) and "-o" in str(denied)
    assert "no space" in str(fsio.write_error("x", OSError(errno.EDQUOT, "Disk quota exceeded")))
