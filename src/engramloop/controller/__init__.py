"""The real-time loop, policy, safety governor, scheduler, recorder and config.
Owns time and threads."""
