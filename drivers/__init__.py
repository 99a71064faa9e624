"""Everything that touches the outside world: boards, streams, files, stimulators, markers.

Import submodules explicitly (``from drivers.chunk import Chunk``); this package imports
nothing heavy on its own so a loop starts fast.
"""
