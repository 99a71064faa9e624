"""engramloop.core."""
