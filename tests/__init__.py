"""The test suite. A regular package, so that `tests.runners.launch_helpers` is ours even where an installed
distribution (verl and openrlhf ship a top-level `tests` package) is on the path."""
