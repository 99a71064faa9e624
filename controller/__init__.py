"""The real-time loop, policy, safety governor, scheduler, recorder, config and CLI.
Owns time and threads."""
__version__ = "0.1.0"
