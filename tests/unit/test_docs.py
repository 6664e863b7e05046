"""The documentation stays true to the code: links resolve, every command has its page, every
file a page names exists, the generated spec reference covers the whole schema, and
``advrun --help`` is a map of the commands. (``make lint`` also builds the site with
``mkdocs build --strict``, which fails on a broken link or anchor inside docs/.)"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from pathlib import Path

import pytest
import yaml

from runner.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "examples" not in p.parts)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# a repository file named in prose or code: runner/x.py, tests/..., bench/..., specs/...
REPO_PATH = re.compile(
    r"(?<![\w/.])((?:runner|tests|bench|specs|templates|docs|\.ci)/[\w./-]*[\w-]\.(?:py|yaml|json|md))"
)
# `<!-- example: docs/examples/x.py -->` then a fenced block: the page shows the tested file
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```python\n(.*?)```\n", re.S)
# a dotted name in code: `runner.stats.paired_difference`, `runner.train.counter.PassCounter`
DOTTED = re.compile(r"`(runner(?:\.\w+)+)")


def _hook():
    spec = importlib.util.spec_from_file_location("advrun_docs", DOCS / "hooks" / "advrun_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _slug(heading: str) -> str:
    """Python-Markdown's toc slug (what MkDocs uses); GitHub's differs only in punctuation runs."""
    text = re.sub(r"\{#([^}]+)\}\s*$", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    out, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            heading = line.lstrip("#").strip()
            explicit = re.search(r"\{#([^}]+)\}\s*$", heading)
            out.add(explicit.group(1) if explicit else _slug(heading))
    return out


def _relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


def test_readme_links_into_the_docs_resolve():
    links = _relative_links(ROOT / "README.md")
    assert any(t.startswith("docs/") for t in links), "the README links into docs/"
    for target in links:
        path, _, anchor = target.partition("#")
        file = ROOT / path
        assert file.exists(), f"README.md links to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(file), f"README.md links to {target}: no such heading"


def test_every_command_has_a_page_in_the_nav_with_its_help():
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    for name in COMMANDS:
        page = DOCS / "commands" / f"{name}.md"
        assert page.is_file(), f"advrun {name} has no page {page.relative_to(ROOT)}"
        assert f"commands/{name}.md" in nav, f"commands/{name}.md is not in mkdocs.yml's nav"
        assert f"<!-- advrun-help {name} -->" in page.read_text(), f"{page.name} lacks its help"
    for page in PAGES:
        rel = page.relative_to(DOCS).as_posix()
        assert rel in nav, f"docs/{rel} is not in mkdocs.yml's nav"


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_files_the_docs_name_exist(page):
    """A page that names runner/x.py or tests/test_y.py must follow the code when it moves."""
    missing = [
        p
        for p in sorted(set(REPO_PATH.findall(page.read_text(encoding="utf-8"))))
        if not (ROOT / p).exists() and not p.startswith("docs/examples/")
    ]
    assert not missing, f"{page.relative_to(ROOT)} names files that do not exist: {missing}"


def _resolves(dotted: str) -> bool:
    """runner.a.b[.attr]: a module file, or an attribute defined in one (read, not imported)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:i])
        for module in (base.with_suffix(".py"), base / "__init__.py"):
            if module.is_file():
                rest = parts[i:]
                text = module.read_text(encoding="utf-8")
                return len(rest) <= 1 and (
                    not rest
                    or re.search(rf"^\s*(def|class) {rest[0]}\b|^{rest[0]}\b", text, re.M)
                    is not None
                )
    return False


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_python_names_the_docs_give_exist(page):
    names = sorted(set(DOTTED.findall(page.read_text(encoding="utf-8"))))
    missing = [n for n in names if not _resolves(n)]
    assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {missing}"


def test_the_spec_reference_covers_every_key_of_the_schema():
    schema = json.loads((ROOT / "specs" / "advrun.schema.json").read_text())
    page = _hook().render_spec_reference(schema)
    sections = re.split(r"\n## ", page)
    by_anchor = {}
    for section in sections[1:]:
        anchor = re.search(r"\{#([^}]+)\}", section.split("\n", 1)[0])
        by_anchor[anchor.group(1) if anchor else "top"] = section
    for name, model in schema["$defs"].items():
        section = by_anchor.get(name.lower())
        assert section is not None, f"no section for {name}"
        for key in model.get("properties", {}):
            assert f"| `{key}` |" in section, f"{name}.{key} is missing from the reference"
    for key in schema["properties"]:
        assert f"| `{key}` |" in by_anchor["top"], f"top-level {key} is missing"
    for target in re.findall(r"\]\(#([^)]+)\)", page):
        assert target in by_anchor, f"the reference links to #{target}, which it does not hold"


def test_the_command_help_in_the_docs_is_the_cli_s():
    text = _hook().command_help("run")
    assert text.startswith("usage: advrun run ")
    for flag in ("--jobs", "--launcher", "--baseline", "--only"):
        assert flag in text


def test_advrun_help_is_a_map_of_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name, (_, help_) in COMMANDS.items():
        line = next((x for x in out.splitlines() if x.split()[:1] == [name]), None)
        assert line is not None and help_ in line, f"{name} is not one line of the map"
    assert "docs/index.md" in out and "docs/commands/COMMAND.md" in out
    assert "exit codes" in out
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: advrun plan ") and "docs/commands/plan.md" in out


def test_the_extending_page_shows_the_tested_example_files():
    page = (DOCS / "extending.md").read_text(encoding="utf-8")
    shown = dict(EXAMPLE.findall(page))
    assert len(shown) == 4, "an attack, a recipe, a data set and a model"
    for path, code in shown.items():
        assert code == (ROOT / path).read_text(encoding="utf-8"), f"{path} differs from the page"
