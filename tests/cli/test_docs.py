"""The docs cannot drift from the code: the config reference is generated from the schema
and committed; every command line, TOML snippet, Python snippet and link in docs/ is
checked against the real CLI parser, the real config loader and the file tree."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from engramloop.cli import build_parser, main
from engramloop.cli.commands.config_reference import generate
from engramloop.controller.config import SHIPPED_DIR, Config, loads_config
from engramloop.core.schema import describe

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = ROOT / "README.md"
#: words of a lab notebook, not of a user document (figures go in docs/performance.md
#: with the command that prints them, stated once, for whoever reads them later)
SESSION_TALK = re.compile(r"\btoday\b|\bthis session\b|\bsession-start\b|"
                          r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")


def _blocks(text: str) -> list[tuple[str, str]]:
    """Fenced code blocks as (language, body)."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def test_committed_config_reference_matches_the_schema(capsys):
    rc = main(["config-reference", "--check", "--out", str(DOCS / "config-reference.md")])
    assert rc == 0, ("docs/config-reference.md is stale: run `engramloop config-reference "
                     "--out docs/config-reference.md` and commit it\n"
                     + capsys.readouterr().err)


def test_config_reference_prints_to_stdout_by_default(capsys, monkeypatch, tmp_path):
    """An installed package never writes into itself: no --out means standard output."""
    monkeypatch.chdir(tmp_path)
    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out == generate()
    assert list(tmp_path.iterdir()) == []
    assert main(["config-reference", "--check"]) == 2  # nothing to compare with


def test_reference_lists_every_key_with_unit_default_and_range():
    text = generate()
    rows = describe(Config)
    assert len(rows) > 20
    for r in rows:
        table, _, leaf = r["key"].rpartition(".")
        section = text.split(f"\n## {table}\n" if table else "\n## top-level\n", 1)[1]
        section = section.split("\n## ", 1)[0]
        line = next((ln for ln in section.splitlines() if ln.startswith(f"| `{leaf}` |")),
                    None)
        assert line is not None, r["key"]
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert cells[1] == r["type"] or r["type"] == "Union" and cells[1] != "Union", r["key"]
        assert cells[2] == r["unit"] and cells[3] == f"`{r['default']}`", r["key"]
        assert cells[4] == r["range"] and cells[5] == r["doc"].replace("\n", " "), r["key"]


def test_check_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "ref.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert main(["config-reference", "--check", "--out", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["config-reference", "--out", str(stale)]) == 0
    assert main(["config-reference", "--check", "--out", str(stale)]) == 0


@pytest.mark.parametrize("page", [*PAGES, README], ids=[*(p.name for p in PAGES), "README"])
def test_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "#")):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name}: broken link {target}"


@pytest.mark.parametrize("page", [*PAGES, README], ids=[*(p.name for p in PAGES), "README"])
def test_snippets_are_valid(page):
    """TOML snippets load with the real schema; Python snippets compile; every
    ``engramloop ...`` command line parses with the real CLI parser."""
    parser = build_parser()
    for lang, body in _blocks(page.read_text(encoding="utf-8")):
        if lang == "toml":
            loads_config(body, name=f"{page.name} snippet")
        elif lang == "python":
            compile(body, f"{page.name} snippet", "exec")
        elif lang in ("", "sh", "bash", "console"):
            for line in body.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                if not line.startswith("engramloop ") or "COMMAND" in line \
                        or "--version" in line:
                    continue
                try:
                    parser.parse_args(shlex.split(line)[1:])
                except SystemExit as exc:
                    pytest.fail(f"{page.name}: `{line}` does not parse ({exc})")


def test_quickstarts_cover_what_a_new_lab_needs():
    cyton = (DOCS / "quickstart-cyton.md").read_text(encoding="utf-8")
    assert "echo 1 | sudo tee /sys/bus/usb-serial/devices/ttyUSB0/latency_timer" in cyton
    assert "Pulse Pal" in cyton and "stim box" in cyton
    for page in ("quickstart-sim.md", "quickstart-lsl.md", "quickstart-replay.md",
                 "safety.md", "citing.md", "live-view-and-reports.md"):
        assert (DOCS / page).is_file(), page
    # docs write configs/NAME.toml: the folder `engramloop configs --copy all` makes
    for cfg in re.findall(r"configs/[\w.-]+\.toml", "".join(
            p.read_text(encoding="utf-8") for p in PAGES)):
        assert (SHIPPED_DIR / cfg.rsplit("/", 1)[1]).is_file(), cfg


def test_readme_is_a_user_document():
    """At most 150 lines: what it is, the two commands, the flow, quickstarts, links; the
    figures live in docs/performance.md."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    for needed in ("make demo", "make test", "pip install .", "─Chunk─▶",
                   "engramloop.read_recording", "docs/performance.md", "docs/install.md",
                   "docs/architecture.md", "docs/api.md"):
        assert needed in text, needed
    assert not SESSION_TALK.search(text), SESSION_TALK.search(text)
    assert "µs" not in text and "F1" not in text  # no figures here


@pytest.mark.parametrize("page", ["performance.md", "limitations.md"])
def test_figures_have_commands_and_no_session_talk(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    hit = SESSION_TALK.search(text)
    assert hit is None, f"{page}: {hit.group(0)!r} in {text[hit.start() - 80:hit.end() + 80]!r}"
    if page == "performance.md":
        for section in text.split("\n## ")[1:]:
            title = section.splitlines()[0]
            assert re.search(r"`(python bench/|engramloop )", section), title
