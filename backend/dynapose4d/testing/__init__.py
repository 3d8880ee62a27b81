"""Test helpers shipped with the package (tiny random-weight models in the real layouts)."""
