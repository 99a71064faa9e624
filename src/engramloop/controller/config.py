"""The run configuration: one TOML file, loaded into typed frozen dataclasses.

Each part of the system declares its own settings dataclass next to its code (see
``controller.schema.setting``); this module assembles them into :class:`Config` and loads
files. Any mistake in a file is a one-line ``ConfigError: <file>: <dotted.key>: <why>``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engramloop.controller.forecast_worker import ForecasterSettings
from engramloop.controller.governor import SafetySettings
from engramloop.controller.policy import PolicySettings
from engramloop.controller.scheduler import SchedulerSettings
from engramloop.core.chunk import SourceError
from engramloop.core.schema import ConfigError, build, setting, to_toml
from engramloop.decoders.detectors import (
    DetectorsSettings,
    check_channels,
    check_nyquist,
    make_detectors,
)
from engramloop.decoders.phase import PhaseSettings
from engramloop.drivers.brainflow_lib import load_brainflow
from engramloop.drivers.brainflow_source import board_id
from engramloop.drivers.files import open_blocks
from engramloop.drivers.lsl_outlets import LslOutletSettings
from engramloop.drivers.outputs import StimulatorsSettings
from engramloop.drivers.sources import BrainFlowSettings, FileSettings, LslSettings
from engramloop.sim.settings import SimSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class SourceSettings:
    """Where samples come from."""

    kind: Literal["sim", "brainflow", "lsl", "file"] = setting(
        "sim", doc="source kind: the built-in simulator, a BrainFlow board, an LSL stream "
                   "or a recorded file")
    channels: tuple[str, ...] = setting(
        (), doc="channel names to use, in order; empty means every channel of the source")
    chunk_samples: int = setting(
        10, ge=1, le=100000, unit="samples",
        doc="samples per chunk handed to the loop (sources that deliver their own chunking "
            "may ignore it); a file replayed at --speed max is decoded in blocks of about "
            "2 s (a whole multiple of it), while decisions, pulses and the safety governor "
            "stay on this chunk grid")
    read_timeout_s: float = setting(
        0.05, gt=0, le=10, unit="s", doc="how long one read waits for data before the loop "
                                         "checks staleness")
    brainflow: BrainFlowSettings = field(default_factory=BrainFlowSettings)
    lsl: LslSettings = field(default_factory=LslSettings)
    file: FileSettings = field(default_factory=FileSettings)


@dataclass(frozen=True)
class Config:
    """A whole run: source, decoders, policy, safety, outputs, recording."""

    name: str = setting("engramloop", doc="name of this rig or trial, written into recordings")
    seed: int = setting(0, ge=0, doc="random seed for everything stochastic in the run")
    source: SourceSettings = field(default_factory=SourceSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    stimulators: StimulatorsSettings = field(default_factory=StimulatorsSettings)
    sim: SimSettings = field(default_factory=SimSettings)
    forecaster: ForecasterSettings = field(default_factory=ForecasterSettings)
    detectors: DetectorsSettings = field(default_factory=DetectorsSettings)
    phase: PhaseSettings = field(default_factory=PhaseSettings)
    lsl_outlets: LslOutletSettings = field(default_factory=LslOutletSettings)

    def validate(self) -> None:
        # the name is printed on terminals and written into every recording's header:
        # a control character there is an escape sequence or an unparsable XDF file
        bad = sorted({f"U+{ord(c):04X}" for c in self.name if ord(c) < 32 or ord(c) == 127})
        if bad:
            raise ValueError(f"name: control character(s) {', '.join(bad)} in {self.name!r}; "
                             "use printable text")


#: The example configs shipped inside the package (``engramloop configs`` lists and copies
#: them). Read-only for the program: nothing writes here.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> list[Path]:
    """The shipped example configs, sorted by name."""
    return sorted(SHIPPED_DIR.glob("*.toml"))


def shipped_config(name: str) -> Path:
    """The shipped config called ``name`` (``sim-ripple`` or ``sim-ripple.toml``).

    Raises
    ------
    ConfigError
        If no shipped config has that name (the message lists the names).
    """
    stem = name[:-5] if name.endswith(".toml") else name
    path = SHIPPED_DIR / f"{stem}.toml"
    if "/" in stem or "\\" in stem or not path.is_file():
        names = ", ".join(p.stem for p in shipped_configs())
        raise ConfigError(name, "", f"no shipped config of that name (shipped: {names})")
    return path


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file.

    Raises
    ------
    ConfigError
        If the file is missing, is not valid TOML, or breaks the schema.
    """
    if not str(path).strip():
        raise ConfigError("(config)", "", "empty path: give the path of a .toml config "
                                          "(examples are in configs/)")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(str(path), "", "is a folder: give the path of a .toml config "
                                         "(examples are in configs/)")
    if not path.is_file():
        raise ConfigError(str(path), "", "file not found (give the path of a .toml config; "
                                         "`engramloop configs` lists the shipped examples "
                                         "and copies them to a folder)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "", f"not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read it ({exc.strerror})") from None
    return loads_config(text, str(path))


def loads_config(text: str, name: str = "<string>") -> Config:
    """Validate a config given as TOML text (tests, overrides)."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays/tables recursively
        raise ConfigError(name, "", "not valid TOML: nested too deeply (a config needs "
                                    "a few levels of tables and arrays)") from None
    _check_renamed(table, name)
    return build(Config, table, file=name)


#: keys renamed by issue 21 (the forecast is P(below-median consolidation), not a decay risk)
RENAMED = {("forecaster", "gate_threshold"): "forecaster.p_below_median_threshold",
           ("forecaster", "gate_when"): 'forecaster.gate ("p_below_median_high" for '
                                        '"risk_high", "p_below_median_low" for "risk_low")'}


def _check_renamed(table: dict, name: str) -> None:
    """A one-line ConfigError naming the new key for a key that was renamed."""
    for (section, key), new in RENAMED.items():
        sec = table.get(section)
        if isinstance(sec, dict) and key in sec:
            raise ConfigError(name, f"{section}.{key}", f"was renamed: use {new}")


def dump_config(cfg: Config) -> str:
    """The effective config (every default filled in) as TOML text."""
    return to_toml(cfg) + "\n"


def check_source_fit(cfg: Config, channels: tuple[str, ...] | None,
                     rate_hz: float | None) -> None:
    """The decoders a run would build fit a source with these channels and this rate.

    Every enabled detector's channels must be in ``channels`` (a one-line error names the
    detector, the missing names, close matches and the names the source has) and every
    band of an enabled detector, and of the phase estimator when the policy needs one,
    must lie below the source's Nyquist frequency. ``channels`` None/empty or ``rate_hz``
    None skips that half (not known before a stream is resolved).

    Raises
    ------
    ConfigError
    """
    make_detectors(cfg, tuple(channels) if channels else None, rate_hz=rate_hz)
    if cfg.policy.target.startswith("theta"):
        if channels and cfg.phase.channel:
            check_channels("phase", (cfg.phase.channel,), tuple(channels))
        if rate_hz is not None:
            check_nyquist("phase", cfg.phase, rate_hz)


def source_shape(cfg: Config) -> tuple[tuple[str, ...] | None, float | None]:
    """(channels, rate_hz) a config's source will deliver, where known without starting
    it: the simulator's settings, a replayed file's contents, a BrainFlow board's
    description; (None, None) for a live LSL stream. ``source.channels`` narrows the
    channel list (a name it lacks is the source's own error at start)."""
    src = cfg.source
    chans: tuple[str, ...] | None = None
    rate: float | None = None
    if src.kind == "sim":
        chans, rate = tuple(cfg.sim.channels), float(cfg.sim.rate_hz)
    elif src.kind == "file" and src.file.path:
        # the header only: the samples are checked when the replay opens the file
        d = open_blocks(src.file.path, stream=src.file.stream, board=src.file.board,
                        units=src.file.units, check=False, channels=src.channels or ())
        chans, rate = d.channels, d.rate_hz
    elif src.kind == "brainflow":
        try:
            descr = load_brainflow().BoardShim.get_board_descr(board_id(src.brainflow.board))
        except (ImportError, SourceError):  # no BrainFlow, an unknown board: the source's
            return None, None               # own error at start
        rate = float(descr["sampling_rate"])
        names = str(descr.get("eeg_names", "")).split(",")
        if len(names) == len(descr.get("eeg_channels", [])) and all(names):
            chans = tuple(names)
    if src.channels:
        chans = tuple(src.channels)
    return chans, rate
