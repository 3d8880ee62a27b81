"""DynaPose4D backend: one image to 4D Gaussians with pose-aligned motion."""

import os

__version__ = "0.1.0"

# torch's CPU wheels run GNU OpenMP, whose idle threads spin at every barrier before they sleep.
# On cores that other processes share, a spinning thread takes the core from the thread doing
# the work: one dynamic-stage step of the demo took 9-15 s with two threads on two busy cores
# instead of 0.4-0.7 s with passive waiting (README, "Speed"). OpenMP reads this once, when
# torch loads, so it is set here, before anything imports torch; a user's own
# OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
