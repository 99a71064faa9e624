"""Stimulation hardware numbers, measured through pyserial on pseudo-terminals against the
emulators running in a separate process (so the emulator does not share our GIL):

- stim box: command -> ACK round trip (median, p99) and the pulses/s the driver sustains,
  with the device's own refractory/rate limits relaxed so the driver is what is measured;
- stim box: timing error of pulses fired at intended host times, intended -> acknowledged
  device edge (``device_edge_s``), and acknowledged -> true emulator edge (clock-map error);
  both for "send at the intended time" and "send 5 ms early with send(at_s=intended)";
- stim box: host SIGKILLed -> device disarmed (watchdog), repeated;
- Pulse Pal: soft trigger + confirming handshake round trip, and reprogramming time;
- stim box heartbeat period as the device received it, during a real ``engramloop run``
  with every core saturated by CPU burners (p50, p99.9, max; the watchdog trips at 100 ms);
- SIGTERM to a real ``engramloop run`` -> the device disarmed (stim box DISARM, Pulse Pal
  stop op 80 received by the emulator), median and max over repeated runs (limit 100 ms).

Run:  .venv/bin/python bench/hardware.py [--n 2000]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from engramloop.core.clock import HostClock  # noqa: E402
from engramloop.core.pulse import Pulse, PulseSpec  # noqa: E402
from engramloop.drivers.pulsepal import PulsePal  # noqa: E402
from engramloop.drivers.stimbox import StimBox  # noqa: E402


def q(xs, p: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=float), p))


def start_emulator(*args: str) -> tuple[subprocess.Popen, str, list]:
    """The stim-box emulator module in a child; returns (proc, port, truth edge list)."""
    module = "engramloop.sim.emulators.stimbox_emulator"
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    port = proc.stdout.readline().strip()
    truth: list = []

    def pump() -> None:
        for line in proc.stdout:
            if line.startswith("edge t="):
                parts = line.split()
                truth.append(float(parts[1][2:]))

    threading.Thread(target=pump, daemon=True).start()
    return proc, port, truth


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(5)


def bench_round_trip(n: int) -> None:
    proc, port, _ = start_emulator("--refractory-us", "0", "--no-rate-limit")
    try:
        with StimBox(port) as sb:
            sb.arm()
            rtts, statuses = [], {}
            t0 = time.monotonic()
            for i in range(n):
                t = time.monotonic()
                d = sb.send(Pulse(i, "bench", PulseSpec(phase_width_s=1e-5, channel=1 + i % 4),
                                  t, t, t + 1))
                statuses[d.status] = statuses.get(d.status, 0) + 1
                if d.status == "acked":
                    rtts.append(d.ack_s - d.sent_s)
            dt = time.monotonic() - t0
        print(f"stimbox round trip PULSE->ACK over {len(rtts)} pulses: median "
              f"{statistics.median(rtts) * 1e6:.0f} us, p99 {q(rtts, 99) * 1e6:.0f} us, "
              f"max {max(rtts) * 1e6:.0f} us")
        print(f"stimbox sustained throughput: {n / dt:.0f} pulses/s acknowledged one at a "
              f"time ({statuses}; device limits off: refractory 0, no rate limit; the "
              "device's real ceiling is 20/s)")
    finally:
        stop(proc)


def bench_timing(n: int, lead_s: float) -> None:
    proc, port, truth = start_emulator("--verbose")
    clock = HostClock()
    try:
        with StimBox(port) as sb:
            sb.arm()
            time.sleep(0.3)  # let the clock map collect heartbeat exchanges
            intended, acked, sent = [], [], []
            t_next = clock.now() + 0.05
            for i in range(n):
                t_next += 0.1  # 10 Hz, above the device's 40 ms refractory
                p = Pulse(i, "bench", PulseSpec(phase_width_s=1e-4), t_next, t_next,
                          t_next + 0.002)
                clock.sleep_until(t_next - lead_s)
                d = sb.send(p, at_s=t_next if lead_s else None)
                if d.status == "acked":
                    intended.append(t_next)
                    acked.append(d.device_edge_s)
                    sent.append(d.sent_s)
            deadline = time.monotonic() + 2
            while len(truth) < len(acked) and time.monotonic() < deadline:
                time.sleep(0.01)
        intended, acked = np.array(intended), np.array(acked)
        tru = np.array(truth[:len(acked)])
        e1 = (acked - intended) * 1e6
        e2 = (acked - tru) * 1e6
        how = (f"sent {lead_s * 1e3:g} ms early, send(at_s=intended)" if lead_s
               else "sent at intended")
        print(f"stimbox edge timing, {len(acked)} pulses at 10 Hz, {how}: acknowledged edge - "
              f"intended: median {np.median(e1):.0f} us, p99 {q(e1, 99):.0f} us; "
              f"acknowledged - true emulator edge (clock-map error): median "
              f"{np.median(e2):.1f} us, p99 |err| {q(np.abs(e2), 99):.1f} us")
    finally:
        stop(proc)


KILLED_HOST = textwrap.dedent("""
    import sys, time
    from engramloop.drivers.stimbox import StimBox
    sb = StimBox(sys.argv[1]); sb.open(); sb.arm()
    print("armed", flush=True)
    time.sleep(60)
""")


def bench_sigkill(reps: int) -> None:
    from engramloop.drivers.stimbox.protocol import DisarmCause
    from engramloop.sim.emulators.stimbox_emulator import StimBoxEmulator

    lat, dev_lat = [], []
    for _ in range(reps):
        with StimBoxEmulator() as emu:
            child = subprocess.Popen([sys.executable, "-c", KILLED_HOST, emu.port], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
            assert child.stdout.readline().strip() == "armed"
            time.sleep(0.15 + 0.02 * np.random.default_rng(len(lat)).random())
            t_kill = time.monotonic()
            os.kill(child.pid, signal.SIGKILL)
            child.wait(5)
            end = time.monotonic() + 2
            while emu.device.armed and time.monotonic() < end:
                time.sleep(0.001)
            dis_us, cause, last_hb = emu.device.log.disarms[-1]
            assert cause == DisarmCause.WATCHDOG
            lat.append((emu.host_time(dis_us) - t_kill) * 1e3)
            dev_lat.append((dis_us - last_hb) / 1e3)
    print(f"stimbox host SIGKILL -> device disarmed, {reps} runs: median {np.median(lat):.1f} "
          f"ms, max {max(lat):.1f} ms after the kill; last heartbeat -> disarm median "
          f"{np.median(dev_lat):.1f} ms, max {max(dev_lat):.1f} ms (watchdog 100 ms)")


def bench_pulsepal(n: int) -> None:
    code = textwrap.dedent("""
        import time
        from engramloop.sim.emulators.pulsepal_emulator import PulsePalEmulator
        e = PulsePalEmulator().start(); print(e.port, flush=True); time.sleep(3600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        port = proc.stdout.readline().strip()
        with PulsePal(port) as pp:
            pp.arm()
            rtts = []
            for i in range(n):
                t = time.monotonic()
                d = pp.send(Pulse(i, "bench", PulseSpec(modality="electrical"), t, t, t + 1))
                rtts.append(d.ack_s - d.sent_s)
            prog = []
            for i in range(50):
                spec = PulseSpec(modality="electrical", amplitude=1.0 + (i % 5),
                                 phase_width_s=1e-4 * (1 + i % 3))
                t = time.perf_counter()
                pp.program(spec)
                prog.append(time.perf_counter() - t)
        print(f"pulsepal soft trigger + confirming handshake round trip over {n}: median "
              f"{statistics.median(rtts) * 1e6:.0f} us, p99 {q(rtts, 99) * 1e6:.0f} us")
        print(f"pulsepal reprogramming a changed spec (op 74 per changed parameter): median "
              f"{statistics.median(prog) * 1e3:.2f} ms, max {max(prog) * 1e3:.2f} ms")
    finally:
        stop(proc)


RIG_CONFIG = """
name = "bench-rig"
seed = 1
[source]
kind = "sim"
chunk_samples = 10
[sim]
rate_hz = 2000.0
[sim.hypnogram]
schedule = ["N3:600"]
[detectors.ripple]
channels = ["CA1", "CA1b"]
pool_weights = [1.0, 0.7]
[detectors.spindle]
enabled = false
[detectors.so]
enabled = false
[policy]
target = "ripple"
[policy.pulse]
modality = "ttl"
shape = "monophasic"
amplitude = 5.0
phase_width_s = 0.001
channel = 1
[safety]
arm_on_start = true
refractory_s = 0.2
rate_window_s = [1.0, 60.0]
rate_max_pulses = [3, 90]
modalities = ["ttl"]
[stimulators]
kinds = ["{kind}"]
[stimulators.pulsepal]
ttl_max_v = 5.0
"""
EMULATOR_MODULE = {"stimbox": "engramloop.sim.emulators.stimbox_emulator",
                   "pulsepal": "engramloop.sim.emulators.pulsepal_emulator"}


class RigRun:
    """An emulator process (logging what it receives, host monotonic times) and a real
    ``engramloop run`` process driving it through --stim-port."""

    def __init__(self, tmp: Path, kind: str, duration_s: float = 600.0) -> None:
        self.log = tmp / f"{kind}.log"
        self.emu = subprocess.Popen([sys.executable, "-m", EMULATOR_MODULE[kind], "--log",
                                     str(self.log)], stdout=subprocess.PIPE, text=True)
        port = self.emu.stdout.readline().strip()
        cfg = tmp / "rig.toml"
        cfg.write_text(RIG_CONFIG.format(kind=kind))
        self.run = subprocess.Popen([sys.executable, "-m", "engramloop", "run", str(cfg),
                                     "--stim-port", port, "--duration", str(duration_s),
                                     "--quiet"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)

    def lines(self) -> list[list[str]]:
        return [ln.split() for ln in self.log.read_text().splitlines() if ln] \
            if self.log.exists() else []

    def first(self, word: str, after: float = -1.0, timeout_s: float = 120.0) -> float:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for ln in self.lines():
                if ln[0] == "rx" and word in ln and float(ln[1]) >= after:
                    return float(ln[1])
            time.sleep(0.005)
        raise RuntimeError(f"{word} never reached the emulator: "
                           f"{self.run.stderr.read() if self.run.poll() is not None else ''}")

    def close(self) -> None:
        for p in (self.run, self.emu):
            if p.poll() is None:
                p.kill()
            p.wait(10)


def burners() -> list[subprocess.Popen]:
    """One pure-Python busy loop per core: every core saturated by another process."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]


def bench_heartbeat_loaded(seconds: float) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        burn = burners()
        rig = RigRun(Path(tmp), "stimbox")
        try:
            armed = rig.first("ARM")
            time.sleep(seconds)
            hb = np.array([float(ln[1]) for ln in rig.lines()
                           if ln[0] == "rx" and ln[2] == "HEARTBEAT" and float(ln[1]) > armed])
            trips = [ln for ln in rig.lines() if ln[:1] == ["disarm"]
                     and ln[2] == "cause=WATCHDOG"]
        finally:
            rig.close()
            for b in burn:
                b.kill()
                b.wait(10)
    d = np.diff(hb) * 1e3
    print(f"stimbox heartbeat period received by the device during a real engramloop run, "
          f"armed, {len(burn)} CPU burners on {os.cpu_count()} cores, {len(d)} periods over "
          f"{seconds:g} s: median {np.median(d):.2f} ms, p99.9 {q(d, 99.9):.2f} ms, max "
          f"{d.max():.2f} ms (watchdog 100 ms; watchdog trips: {len(trips)})")


def bench_sigterm(reps: int, kind: str) -> None:
    import tempfile

    word = {"stimbox": "DISARM", "pulsepal": "stop_all"}[kind]
    lat, codes = [], []
    for i in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            rig = RigRun(Path(tmp), kind)
            try:
                rig.first("ARM" if kind == "stimbox" else "soft_trigger")
                time.sleep(0.2 + 0.3 * np.random.default_rng(i).random())
                t_sig = time.monotonic()
                rig.run.send_signal(signal.SIGTERM)
                t_off = rig.first(word, after=t_sig, timeout_s=10.0)
                codes.append(rig.run.wait(30))
                lat.append((t_off - t_sig) * 1e3)
            finally:
                rig.close()
    print(f"{kind}: SIGTERM to a real engramloop run -> {word} received by the device, "
          f"{reps} runs: median {np.median(lat):.1f} ms, max {max(lat):.1f} ms (limit 100 ms);"
          f" exit status {sorted(set(codes))}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="pulses for the round-trip bench")
    ap.add_argument("--timing-n", type=int, default=100, help="pulses for the timing bench")
    ap.add_argument("--kills", type=int, default=5, help="SIGKILL repetitions")
    ap.add_argument("--signals", type=int, default=10, help="SIGTERM repetitions per device")
    ap.add_argument("--loaded-s", type=float, default=20.0,
                    help="seconds of heartbeats measured with every core saturated")
    ap.add_argument("--only", choices=("faults",),
                    help="faults: only the heartbeat-under-load and SIGTERM benches")
    args = ap.parse_args()
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cpus, load "
          f"{os.getloadavg()[0]:.2f}; emulators in a child process, ptys")
    if args.only == "faults":
        bench_heartbeat_loaded(args.loaded_s)
        bench_sigterm(args.signals, "stimbox")
        bench_sigterm(args.signals, "pulsepal")
        return 0
    bench_round_trip(args.n)
    bench_timing(args.timing_n, 0.0)
    bench_timing(args.timing_n, 0.005)
    bench_sigkill(args.kills)
    bench_pulsepal(min(args.n, 1000))
    bench_heartbeat_loaded(args.loaded_s)
    bench_sigterm(args.signals, "stimbox")
    bench_sigterm(args.signals, "pulsepal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
