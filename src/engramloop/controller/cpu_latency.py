"""Keep the CPUs out of deep idle states while a real-time run lasts (Linux PM QoS).

Between 10-sample chunks the loop waits ~5 ms. An idle CPU drops into an idle state it
takes long to leave (on a virtual machine: the halt that hands the core to the host), and
the loop then runs its first microseconds after every wake-up with cold caches. Linux's
PM QoS interface lets a process cap the CPU wake-up latency: write a 32-bit integer
(microseconds) to ``/dev/cpu_dma_latency`` and keep the file open; the request holds
until it is closed (kernel documentation, Documentation/power/pm_qos_interface.rst). 0
keeps idle CPUs polling. The cost is power: the CPUs never sleep deeply during the run.

Reading the file returns the latency in force (the smallest of all open requests).
Writing needs root (or a udev rule granting the file to the rig user); a refused request
is reported and the run continues with normal idle states.
"""
from __future__ import annotations

import os
import struct

#: the kernel's PM QoS character device for CPU wake-up latency
DEVICE = "/dev/cpu_dma_latency"


class CpuLatencyRequest:
    """One PM QoS request, held from :meth:`hold` until :meth:`release` (idempotent).

    Parameters
    ----------
    latency_us : int
        Largest acceptable CPU wake-up latency, microseconds (0 = never leave polling).
    path : str
        The PM QoS device (tests may point this elsewhere).
    """

    def __init__(self, latency_us: int, path: str = DEVICE) -> None:
        if not 0 <= int(latency_us) <= 2**31 - 1:
            raise ValueError(f"latency_us must be 0 .. 2**31-1 microseconds, got {latency_us}")
        self.latency_us = int(latency_us)
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def hold(self) -> None:
        """Open the device and write the request.

        Raises
        ------
        OSError
            With the device path and what to do when it cannot be opened or written.
        """
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError as exc:
            raise OSError(exc.errno, f"{self.path}: {exc.strerror} (writing it needs root "
                                     "or a udev rule giving the rig user write access)") from None
        try:
            os.write(fd, struct.pack("=i", self.latency_us))
        except OSError as exc:
            os.close(fd)
            raise OSError(exc.errno, f"{self.path}: write refused: {exc.strerror}") from None
        except BaseException:       # Ctrl-C between open and here: no request left behind
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Close the device: the kernel drops the request."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def current_latency_us(path: str = DEVICE) -> int:
    """The CPU wake-up latency limit in force, microseconds (reading needs root too)."""
    with open(path, "rb") as f:
        return struct.unpack("=i", f.read(4))[0]


__all__ = ["CpuLatencyRequest", "current_latency_us", "DEVICE"]
