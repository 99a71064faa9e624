"""The simulated hippocampus and cortex, the memory model, device emulators and
closed-loop trials."""
