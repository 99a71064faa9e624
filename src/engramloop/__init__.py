"""engramloop: closed-loop neuromodulation controller.

Subpackages follow the data flow, and imports run one way:
``core`` <- ``drivers``, ``decoders``, ``sim`` <- ``controller`` <- ``analysis``, ``cli``.
"""
__version__ = "0.1.0"
