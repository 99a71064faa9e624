"""engramloop.sim."""
