"""`advrun validate`, `plan` and `schema` through the real CLI: fast, torch-free, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spec_base import BASE

from runner.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_validate_and_plan_never_import_torch(write_spec):
    path = write_spec()
    code = (
        "import sys; from runner.cli import main; "
        f"rc = main(['validate', {str(path)!r}]) + main(['plan', {str(path)!r}]); "
        "heavy = [m for m in ('torch', 'art', 'optuna', 'pandas') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_validate_reports_errors_with_exit_2_and_no_traceback(write_spec, capsys):
    path = write_spec(BASE.replace("epochs: 1}", "epocs: 1}", 1))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:8:" in err and "recipes.0.epocs" in err and "Traceback" not in err


def test_plan_lists_runs_with_status(write_spec, capsys, tmp_path):
    assert main(["plan", str(write_spec()), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "cnn@madry@s0-" in out and "new" in out and "2 run(s): 2 new" in out
    assert main(["plan", str(write_spec()), "--json", "-o", str(tmp_path / "out")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["recipe"] for r in rows} == {"std", "madry"}
    assert rows[1]["hyperparameters"]["eps"] == 0.1


def test_bad_override_is_named(write_spec, capsys):
    assert main(["validate", str(write_spec()), "recipes.0.epochs=many"]) == 2
    err = capsys.readouterr().err
    assert "override 'recipes.0.epochs=many'" in err


def test_schema_is_json_and_committed_copy_is_current(capsys):
    assert main(["schema"]) == 0
    text = capsys.readouterr().out
    schema = json.loads(text)
    assert schema["title"] == "advrun spec" and "recipes" in schema["properties"]
    committed = (ROOT / "specs" / "advrun.schema.json").read_text()
    assert committed == text, "run: advrun schema -o specs/advrun.schema.json"


def test_example_specs_validate():
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        assert main(["validate", str(spec)]) == 0, spec


def test_python_dash_m_works():
    out = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(ROOT / "specs" / "quickstart.yaml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
