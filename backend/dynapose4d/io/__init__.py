"""File formats: 3DGS PLY (and later sequences, checkpoints)."""

from .ply import PlyError, read_ply, write_ply

__all__ = ["PlyError", "read_ply", "write_ply"]
