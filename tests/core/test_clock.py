import pylsl

from engramloop.core.clock import HostClock, SimClock


def test_host_clock_is_the_lsl_clock() -> None:
    clock = HostClock()
    a, lsl, b = clock.now(), pylsl.local_clock(), clock.now()
    assert a - 0.001 <= lsl <= b + 0.001


def test_host_clock_sleep_until_absolute_deadline() -> None:
    clock = HostClock()
    target = clock.now() + 0.002
    clock.sleep_until(target)
    assert clock.now() >= target


def test_sim_clock_moves_only_when_told() -> None:
    c = SimClock(10.0)
    c.sleep_until(12.5)
    c.sleep_until(11.0)  # never goes back
    c.advance(0.5)
    assert c.now() == 13.0
