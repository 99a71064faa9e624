"""Feed the recorder and a mirror (the LSL outlets) through the recorder's interface."""
from __future__ import annotations

from typing import Any

from engramloop.core.chunk import Chunk


class Tee:
    """Feeds the recorder and a mirror (LSL outlets) through the recorder's interface.

    The recorder comes first and is the one whose failure matters: ``failed`` and
    ``check()`` report the recorder; a failing mirror stops the run like a failing recorder
    would, because its exception propagates from the write.
    """

    def __init__(self, recorder: Any, mirror: Any) -> None:
        self.recorder, self.mirror = recorder, mirror

    @property
    def failed(self) -> bool:
        return self.recorder.failed

    def add_signal_stream(self, source: Any) -> None:
        self.recorder.add_signal_stream(source)
        self.mirror.add_signal_stream(source)

    def start(self) -> None:
        self.recorder.start()
        self.mirror.start()

    def write_chunk(self, chunk: Chunk) -> None:
        self.recorder.write_chunk(chunk)
        self.mirror.write_chunk(chunk)

    def write_marker(self, stream: str, t_s: float, obj: Any) -> None:
        self.recorder.write_marker(stream, t_s, obj)
        self.mirror.write_marker(stream, t_s, obj)

    def check(self) -> None:
        self.recorder.check()

    def close(self) -> None:
        try:
            self.mirror.close()
        finally:
            self.recorder.close()


__all__ = ["Tee"]
