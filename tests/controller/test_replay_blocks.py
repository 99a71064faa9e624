"""``--speed max`` replay of a file decodes blocks of ~30 s at once (issue 23) and acts on
them at the ``chunk_samples`` grid: on a real night excerpt (DREAMS excerpt 5, 30 min of
expert-scored human sleep EEG at 200 Hz) the events, the governor's decisions and the
(sham) pulses with all their times are those of the chunk-by-chunk replay."""
from __future__ import annotations

import numpy as np
import pytest
from shared_data import DATA, require_data

from engramloop.controller import loop as loop_mod
from engramloop.controller.build import build_loop
from engramloop.controller.config import loads_config
from engramloop.drivers.files import FileSource

CFG = ('[source]\nchunk_samples = 10\n[detectors.ripple]\nenabled = false\n'
       '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\nchannels = ["C3-A1"]\n'
       '[policy]\ntarget = "{target}"\ncondition = "sham"\n[safety]\narm_on_start = true\n')


def _replay(path, target, block_s, monkeypatch, duration_s=None, nan_at=None, record=None,
            cfg_text=CFG):
    monkeypatch.setattr(loop_mod, "BLOCK_S", block_s)
    cfg = loads_config(cfg_text.format(target=target))
    src = FileSource(path, speed="max", chunk_samples=10)
    if nan_at is not None:        # an electrode pop in the middle of the night
        real = src.reader.blocks

        def blocks(cols):
            i = 0
            for x, t in real(cols):
                x = x.copy()
                hit = (nan_at >= i) & (nan_at < i + len(t))
                x[nan_at[hit] - i] = np.nan
                i += len(t)
                yield x, t
        src.reader.blocks = blocks
    lp = build_loop(cfg, speed="max", source=src, duration_s=duration_s,
                    record=None if record is None else str(record))
    res = lp.run(duration_s)
    return lp, res


def _key(res):
    ev = [(e.kind, e.channel, e.onset_s, e.detect_s, e.peak_s) for e in res.events]
    dec = [(d.t_s, d.approved, d.rule, d.intent.intended_s, d.intent.detect_s)
           for d in res.decisions]
    pul = [(p.pulse_id, p.intended_s, d.status, d.sent_s) for p, d in res.deliveries]
    return ev, dec, pul


@pytest.mark.slow
@pytest.mark.parametrize("target,block_s", [("spindle", 2.0), ("so_upstate", 2.0),
                                            ("spindle", loop_mod.BLOCK_S),
                                            ("so_upstate", loop_mod.BLOCK_S)])
def test_block_replay_equals_chunk_replay_on_a_real_night(target, block_s,
                                                          monkeypatch) -> None:
    """At 2 s blocks and at the default (30 s): the same events, decisions and pulses."""
    path = require_data(DATA / "dreams_dev" / "excerpt5.edf")
    lp1, by_chunk = _replay(path, target, 0.0, monkeypatch)
    assert lp1._grid == 0 and lp1.source.block_samples == 10
    lp2, by_block = _replay(path, target, block_s, monkeypatch)
    assert lp2._grid == 10 and lp2.source.block_samples == round(block_s * 200)
    assert by_block.n_chunks < by_chunk.n_chunks / 30
    a, b = _key(by_chunk), _key(by_block)
    assert len(a[0]) > 100 and len(a[1]) > 10 and len(a[2]) > 10   # it did decide things
    assert a == b
    assert by_block.n_samples == by_chunk.n_samples
    assert by_block.t_end_s == pytest.approx(by_chunk.t_end_s)


@pytest.mark.slow
@pytest.mark.parametrize("block_s", [2.0, loop_mod.BLOCK_S])
def test_block_replay_with_duration_and_nonfinite_samples_equals_chunk_replay(
        block_s, monkeypatch) -> None:
    """A run cut by --duration stops after the same grid chunk; a block holding NaN is
    fed chunk by chunk (the guard pauses detectors per chunk), as are the chunks after
    it while the detectors settle."""
    path = require_data(DATA / "dreams_dev" / "excerpt5.edf")
    nan_at = np.arange(40_123, 40_321)
    _, by_chunk = _replay(path, "spindle", 0.0, monkeypatch, duration_s=900.37,
                          nan_at=nan_at)
    _, by_block = _replay(path, "spindle", block_s, monkeypatch, duration_s=900.37,
                          nan_at=nan_at)
    assert by_chunk.n_artefacts == by_block.n_artefacts == 1
    assert _key(by_chunk) == _key(by_block)
    assert by_block.n_samples == by_chunk.n_samples
    assert by_block.t_end_s == pytest.approx(by_chunk.t_end_s)



def _edf_plus_d_with_gaps(src, dst, seconds, every_records, jump_s):
    """The first ``seconds`` of a one-channel EDF as EDF+D with a ``jump_s`` gap before
    every ``every_records``-th 1 s record: written as EDF+C by pyedflib (the counterpart;
    it cannot write EDF+D), then each record's time-keeping TAL moved (EDF+ spec)."""
    import pyedflib

    from engramloop.drivers.edf_plus import read_header

    r = pyedflib.EdfReader(str(src))
    x, rate, label = r.readSignal(0)[:int(seconds * 200)], r.getSampleFrequency(0), \
        r.getLabel(0)
    r.close()
    hdr = [pyedflib.highlevel.make_signal_header(label, dimension="uV", sample_frequency=rate,
                                                 physical_min=-500, physical_max=500)]
    assert pyedflib.highlevel.write_edf(str(dst), [np.clip(x, -500, 500)], hdr,
                                        pyedflib.highlevel.make_header(),
                                        file_type=pyedflib.FILETYPE_EDFPLUS)
    b = bytearray(dst.read_bytes())
    b[192:197] = b"EDF+D"
    h = read_header(dst)
    rb, s = sum(h.per_record) * 2, h.annotation_signals[0]
    off, size = sum(h.per_record[:s]) * 2, h.per_record[s] * 2
    for k in range(h.n_records):
        slot = h.header_bytes + k * rb + off
        tal = f"+{k + (k // every_records) * jump_s:.6f}\x14\x14\x00".encode()
        b[slot:slot + size] = tal + b"\x00" * (size - len(tal))
    dst.write_bytes(bytes(b))
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("target", ["spindle", "so_upstate"])
def test_block_replay_of_an_edf_plus_d_with_many_gaps_equals_chunk_replay(
        target, tmp_path, monkeypatch) -> None:
    """Real sleep EEG (DREAMS excerpt 5, 10 min) with a 0.37 s gap every 3 s: the governor
    blocks pulses for one refractory period after the first chunk after a gap. A block
    observed its stretch up to the first detection as one piece after a gap, so the
    block lasted until that detection plus the refractory: pulses the chunk-by-chunk
    replay approved were refused as 'gap' (5 of 23 spindle pulses). Each gap is in the
    recording's log stream (read back by pyxdf) at the time the chunk replay notes it
    (was the end of the stretch observed, up to 2 s late)."""
    import pyxdf

    path = _edf_plus_d_with_gaps(require_data(DATA / "dreams_dev" / "excerpt5.edf"),
                                 tmp_path / "gaps.edf", 600, 3, 0.37)
    _, by_chunk = _replay(path, target, 0.0, monkeypatch, record=tmp_path / "c.xdf")
    _, by_block = _replay(path, target, 2.0, monkeypatch, record=tmp_path / "b.xdf")
    assert by_chunk.n_gaps == by_block.n_gaps == 199
    a, b = _key(by_chunk), _key(by_block)
    assert len(a[2]) >= 3 and any(d[1] for d in a[1])   # it did approve pulses
    assert a == b

    def gap_log(name):
        streams, _ = pyxdf.load_xdf(str(tmp_path / name), dejitter_timestamps=False)
        log = next(s for s in streams if s["info"]["name"][0] == "engramloop.log")
        return [(round(float(ts), 9), v[0]) for ts, v in
                zip(log["time_stamps"], log["time_series"], strict=True) if '"gap"' in v[0]]

    got, want = gap_log("b.xdf"), gap_log("c.xdf")
    assert len(want) == 199
    assert got == want



@pytest.mark.slow
def test_block_replay_refuses_pulses_until_the_last_detector_calibrated(monkeypatch) -> None:
    """The slow-oscillation detector calibrates 71.9 s in (DREAMS excerpt 5), inside the
    2 s block [70, 72) s that holds a spindle at 71.4 s: the governor counted the
    detectors calibrated from the block's decoding, before that spindle, and approved a
    pulse at 71.445 s that the chunk replay refuses as 'calibrating'."""
    path = require_data(DATA / "dreams_dev" / "excerpt5.edf")
    text = CFG.replace("[detectors.so]\n", "[detectors.so]\ncalibration_s = 71.9\n")
    _, by_chunk = _replay(path, "spindle", 0.0, monkeypatch, duration_s=120, cfg_text=text)
    _, by_block = _replay(path, "spindle", 2.0, monkeypatch, duration_s=120, cfg_text=text)
    done = max(e.detect_s for e in by_block.events if e.kind == "calibration_done")
    assert done == pytest.approx(71.9)
    early = [d for d in by_block.decisions if d.t_s < done]
    assert early and not any(d.approved for d in early)      # it was asked, and refused
    assert _key(by_block) == _key(by_chunk)



@pytest.mark.slow
def test_block_replay_cut_by_duration_records_no_annotation_after_its_end(
        tmp_path, monkeypatch) -> None:
    """EDF+ annotations (written by pyedflib, one every 1.3 s on 2 min of excerpt 5) are
    handed out with the block they fall in; a run cut by --duration inside a block
    recorded the block's later annotations too (one at 61.6 s of a run ending at
    61.045 s), which a chunk replay never reads. Read back with pyxdf."""
    import pyedflib
    import pyxdf

    r = pyedflib.EdfReader(str(require_data(DATA / "dreams_dev" / "excerpt5.edf")))
    x = r.readSignal(0)[:200 * 120]
    r.close()
    path = tmp_path / "ann.edf"
    hdr = [pyedflib.highlevel.make_signal_header("C3-A1", dimension="uV",
                                                 sample_frequency=200, physical_min=-500,
                                                 physical_max=500)]
    head = pyedflib.highlevel.make_header()
    head["annotations"] = [[float(o), -1, f"n{i}"] for i, o in
                           enumerate(np.arange(0.5, 119, 1.3))]
    assert pyedflib.highlevel.write_edf(str(path), [np.clip(x, -500, 500)], hdr, head,
                                        file_type=pyedflib.FILETYPE_EDFPLUS)

    def annotations(block_s, name):
        _replay(path, "spindle", block_s, monkeypatch, duration_s=61.003,
                record=tmp_path / name)
        streams, _ = pyxdf.load_xdf(str(tmp_path / name), dejitter_timestamps=False)
        by = {s["info"]["name"][0]: s for s in streams}
        t0, t1 = by["engramloop.raw"]["time_stamps"][[0, -1]]
        a = by["engramloop.annotations"]
        return t1 - t0, [(round(float(t - t0), 6), v[0]) for t, v in
                         zip(a["time_stamps"], a["time_series"], strict=True)]

    end_c, by_chunk = annotations(0.0, "c.xdf")
    end_b, by_block = annotations(2.0, "b.xdf")
    assert end_b == pytest.approx(end_c) == pytest.approx(61.045)
    assert by_chunk and by_chunk[-1][0] <= end_c
    assert by_block == by_chunk



RIPPLE_CFG = ('[source]\nchunk_samples = 10\n[detectors.ripple]\nchannels = ["CA1", "CA1b"]\n'
              'pool_weights = [1.0, 0.7]\n[detectors.spindle]\nenabled = false\n'
              '[detectors.so]\nenabled = false\n[policy]\ntarget = "{target}"\n'
              'condition = "sham"\nfire_delay_s = 0.0\n[safety]\narm_on_start = true\n'
              'refractory_s = 0.2\n')


@pytest.mark.slow
def test_block_replay_of_ripples_equals_chunk_replay(tmp_path, monkeypatch) -> None:
    """Ripple-locked sham pulses on 60 s of the simulator's CA1 LFP (2 kHz: a 2 s block
    is 4000 samples, as long as the ripple detector's onset ring was): events with their
    onsets, decisions and pulses as in the chunk replay, including ripples that began in
    the block before the one they were detected in."""
    from engramloop.cli import main
    from engramloop.controller.config import SHIPPED_DIR

    path = tmp_path / "rip.npz"
    assert main(["sim", "--duration", "60", "--out", str(path), "--config",
                 str(SHIPPED_DIR / "sim-ripple.toml"), "--quiet"]) == 0
    _, by_chunk = _replay(path, "ripple", 0.0, monkeypatch, cfg_text=RIPPLE_CFG)
    lp, by_block = _replay(path, "ripple", 2.0, monkeypatch, cfg_text=RIPPLE_CFG)
    assert lp.source.block_samples == 4000
    a, b = _key(by_chunk), _key(by_block)
    assert len(a[0]) > 20 and len(a[2]) > 20
    t0 = by_chunk.t0_s
    across = [e for e in by_chunk.events if e.kind == "ripple"
              and (e.onset_s - t0) // 2.0 < (e.detect_s - t0) // 2.0]
    assert across          # a ripple began in the block before its detection
    assert a == b


class _Board:
    def __init__(self) -> None:
        self.n = 0

    def publish(self, status) -> None:
        self.n += 1


@pytest.mark.parametrize("step_s, want", [(0.0, "one"), (1.0, "every chunk")])
def test_status_snapshots_at_max_speed_follow_the_wall_clock(step_s, want,
                                                             monkeypatch) -> None:
    """A snapshot every 0.25 s of *wall* time at --speed max (one per 0.25 s of signal
    cost a quarter of a replay): a frozen wall clock gives one snapshot for 30 min of
    signal, a wall clock moving 1 s per look gives one per chunk."""
    path = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    cfg = loads_config(CFG.format(target="spindle"))
    board = _Board()
    lp = build_loop(cfg, speed="max", source=FileSource(path, speed="max", chunk_samples=10),
                    status_board=board)
    ticks = iter(np.arange(1e6) * step_s)
    lp.wall_clock = lambda: float(next(ticks))
    res = lp.run()
    assert res.duration_s == pytest.approx(1800.0, abs=0.1)
    if want == "one":   # the first snapshot, and the final one at the end of the run
        assert board.n <= 2
    else:
        assert board.n >= res.n_chunks
