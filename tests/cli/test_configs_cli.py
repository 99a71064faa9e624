"""`engramloop configs` lists and copies the configs shipped as package data, and the
forecaster's optional dependency (torch, the `forecaster` extra) fails as one line."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from engramloop.cli import main
from engramloop.controller.config import SHIPPED_DIR, load_config, shipped_configs


def test_lists_every_shipped_config_with_its_purpose(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    names = [p.stem for p in shipped_configs()]
    assert len(names) >= 8 and "sim-ripple-forecast" in names
    for p in shipped_configs():
        first = next(ln for ln in p.read_text().splitlines() if ln.strip("# "))
        assert f"{p.stem}  " in out and first.lstrip("# ").strip() in out


def test_copies_one_then_refuses_to_overwrite(tmp_path, capsys):
    dest = tmp_path / "mine"
    assert main(["configs", "--copy", "sim-ripple", "--to", str(dest)]) == 0
    copied = dest / "sim-ripple.toml"
    assert copied.read_bytes() == (SHIPPED_DIR / "sim-ripple.toml").read_bytes()
    load_config(copied)
    copied.write_text("# my edits\n")
    assert main(["configs", "--copy", "sim-ripple.toml", "--to", str(dest)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exist" in err and "--force" in err
    assert copied.read_text() == "# my edits\n"  # the user's file is untouched
    assert main(["configs", "--copy", "sim-ripple", "--to", str(dest), "--force"]) == 0
    assert copied.read_bytes() == (SHIPPED_DIR / "sim-ripple.toml").read_bytes()


def test_copies_all_into_configs_of_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["configs", "--copy", "all"]) == 0
    assert sorted(p.name for p in (tmp_path / "configs").iterdir()) == sorted(
        p.name for p in shipped_configs())


def test_unknown_name_is_one_line_listing_the_shipped_ones(tmp_path, capsys):
    assert main(["configs", "--copy", "sim-ripples", "--to", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sim-ripples" in err and "sim-ripple-forecast" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_config_file_points_at_the_configs_command(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.toml")]) == 2
    assert "engramloop configs" in capsys.readouterr().err


# torch is installed here (the suite needs it); a child interpreter whose import system
# refuses it stands in for an installation without the `forecaster` extra
NO_TORCH = textwrap.dedent("""
    import sys
    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torch":
                raise ModuleNotFoundError("No module named 'torch'", name="torch")
    sys.meta_path.insert(0, NoTorch())
    from engramloop.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _cli_without_torch(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_forecaster_without_torch_is_one_line_naming_the_extra(tmp_path):
    r = _cli_without_torch("run", str(SHIPPED_DIR / "sim-ripple-forecast.toml"),
                           "--duration", "5", "--speed", "max",
                           "--record", str(tmp_path / "s.xdf"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "torch" in r.stderr and "pip install 'engramloop[forecaster]'" in r.stderr
    assert not (tmp_path / "s.xdf").exists()  # failed while building, before recording


def test_demo_without_torch_runs_the_ungated_trial_and_says_so(tmp_path):
    r = _cli_without_torch("demo", "--duration", "5", "--out", str(tmp_path / "d"),
                           cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "torch is not installed" in r.stdout and "sim-ripple.toml" in r.stdout
    assert "engramloop[forecaster]" in r.stdout
    assert (tmp_path / "d" / "session.xdf").is_file()
