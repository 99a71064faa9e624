"""The engramloop stim box: wire protocol (``protocol``), host driver (``host.StimBox``),
reference firmware (``firmware/``) and its specification (``PROTOCOL.md``)."""
from engramloop.drivers.stimbox.host import ClockMap, StimBox, spec_to_command

__all__ = ["StimBox", "ClockMap", "spec_to_command"]
