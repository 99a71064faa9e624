"""engramloop.sim.emulators."""
