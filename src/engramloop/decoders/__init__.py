"""engramloop.decoders."""
