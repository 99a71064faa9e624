"""engramloop.drivers."""
