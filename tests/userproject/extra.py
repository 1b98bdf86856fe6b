"""An entry-point file that imports its neighbour shapes.py (tests copy this folder; not a test module)."""

from __future__ import annotations

from shapes import load

__all__ = ["load"]
