"""DynaPose4D backend: one image to 4D Gaussians with pose-aligned motion."""

import os

__version__ = "0.1.0"

# torch's CPU wheels run GNU OpenMP, whose idle threads spin 300,000 rounds at every barrier
# before they sleep. On cores that other processes share, a spinning thread takes the core from
# the thread doing the work. Measured on 2 cores with a demo step (docs/benchmarks.md, "Speed of animate"):
# busy, 1.0 s at the default spin, 0.38 s at 1,000 rounds, 0.35 s with passive waiting; idle,
# the whole demo 28.1 s, 28.6 s and 34 s. So a short spin: nearly passive's speed when shared,
# the default's when not. OpenMP reads this once, when torch loads, so it is set here, before
# anything imports torch; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"
