"""Run specs, run directories, recipes (one per method), launcher and run registry."""
