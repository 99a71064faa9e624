"""Config loading: typed, frozen, unknown keys are errors, messages name file and key."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from engramloop.cli import main
from engramloop.controller.config import SHIPPED_DIR, Config, dump_config, load_config, loads_config
from engramloop.core.schema import ConfigError, build, describe, setting

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Inner:
    band_hz: tuple[float, float] = setting((150.0, 250.0), doc="band", unit="Hz", gt=0)
    mode: Literal["fixed", "adaptive"] = setting("adaptive", doc="threshold mode")

    def validate(self) -> None:
        if self.band_hz[0] >= self.band_hz[1]:
            raise ValueError(f"band_hz: low edge must be below high edge, got {self.band_hz}")


@dataclass(frozen=True)
class Outer:
    refractory_s: float = setting(0.1, doc="refractory", unit="s", gt=0)
    count: int = setting(3, doc="count", ge=1, le=10)
    armed: bool = setting(False, doc="armed")
    names: tuple[str, ...] = setting((), doc="names")
    inner: Inner = field(default_factory=Inner)


@pytest.mark.parametrize("table, key, words", [
    ({"refractory_s": -1}, "refractory_s", "must be > 0 s, got -1"),
    ({"refractory_s": "fast"}, "refractory_s", "must be a number"),
    ({"count": 2.5}, "count", "must be an integer"),
    ({"count": 11}, "count", "must be <= 10"),
    ({"armed": 1}, "armed", "true or false"),
    ({"names": "CA1"}, "names", "list of str"),
    ({"names": ["CA1", 2]}, "names[1]", "must be a string"),
    ({"refractory": 0.1}, "refractory", "unknown key; allowed keys here: armed, count"),
    ({"inner": {"mode": "auto"}}, "inner.mode", "one of 'fixed', 'adaptive'"),
    ({"inner": {"band_hz": [250, 150]}}, "inner.band_hz", "low edge must be below"),
    ({"inner": {"band_hz": [150]}}, "inner.band_hz", "list of 2"),
    ({"inner": {"band_hz": [0, 150]}}, "inner.band_hz[0]", "must be > 0 Hz"),
    ({"inner": {"oops": 1}}, "inner.oops", "unknown key"),
    ({"inner": 3}, "inner", "must be a table"),
    ({"refractory_s": float("nan")}, "refractory_s", "finite"),
])
def test_schema_errors_name_file_key_and_rule(table: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(Outer, table, file="rig.toml")
    assert info.value.file == "rig.toml"
    assert info.value.key == key
    assert words in str(info.value)
    assert str(info.value).startswith(f"rig.toml: {key}: ")


def test_schema_fills_defaults_and_freezes() -> None:
    obj = build(Outer, {"count": 4, "inner": {"band_hz": [100, 200.5]}})
    assert obj.count == 4 and obj.refractory_s == 0.1 and obj.inner.band_hz == (100.0, 200.5)
    assert isinstance(obj.inner.band_hz[0], float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.count = 5  # type: ignore[misc]


def test_cross_field_error_on_a_nested_key_gets_the_full_dotted_path() -> None:
    @dataclass(frozen=True)
    class Parent:
        inner: Inner = field(default_factory=Inner)

        def validate(self) -> None:
            raise ValueError("inner.mode: not allowed with this band")

    with pytest.raises(ConfigError) as info:
        build(Parent, {}, file="f.toml", prefix="sim")
    assert str(info.value) == "f.toml: sim.inner.mode: not allowed with this band"


def test_required_field_missing() -> None:
    @dataclass(frozen=True)
    class Needs:
        port: str = setting(doc="serial port")

    with pytest.raises(ConfigError, match="port: required"):
        build(Needs, {}, file="x.toml")


def test_describe_lists_every_key_with_unit_and_range() -> None:
    rows = {r["key"]: r for r in describe(Outer)}
    assert set(rows) == {"refractory_s", "count", "armed", "names", "inner.band_hz", "inner.mode"}
    assert rows["refractory_s"]["unit"] == "s" and rows["refractory_s"]["range"] == "> 0"
    assert rows["count"]["range"] == ">= 1, <= 10"


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [1,\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[source]\nkind = 'usb'\n")
    with pytest.raises(ConfigError) as info:
        load_config(wrong)
    assert str(info.value).startswith(f"{wrong}: source.kind: must be one of 'sim'")


def test_effective_config_round_trips() -> None:
    cfg = loads_config("name = 'rig-a'\nseed = 7\n")
    again = loads_config(dump_config(cfg))
    assert again == cfg and again.name == "rig-a" and again.seed == 7
    assert loads_config(dump_config(Config())) == Config()


@pytest.mark.parametrize("path", sorted(SHIPPED_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    load_config(path)


def test_validate_command_prints_effective_config(tmp_path: Path, capsys) -> None:
    f = tmp_path / "rig.toml"
    f.write_text("name = 'bench-3'\n")
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and 'name = "bench-3"' in out and "[source]" in out


def test_validate_command_one_line_error(tmp_path: Path) -> None:
    f = tmp_path / "rig.toml"
    f.write_text("[source]\nchunk_samples = 0\n")
    proc = subprocess.run([sys.executable, "-m", "engramloop.cli", "validate", str(f)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == (f"ConfigError: {f}: source.chunk_samples: must be >= 1 "
                                   "samples, got 0")


def test_version_and_help_list_subcommands() -> None:
    exe = [sys.executable, "-m", "engramloop.cli"]
    version = subprocess.run(exe + ["--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("engramloop 0.")
    helptext = subprocess.run(exe + ["--help"], capture_output=True, text=True).stdout
    commands = sorted(p.stem for p in (REPO / "src/engramloop/cli/commands").glob("*.py")
                      if not p.stem.startswith("_"))
    assert "validate" in commands
    for name in commands:
        assert name.replace("_", "-") in helptext
