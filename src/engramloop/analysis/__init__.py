"""engramloop.analysis."""
