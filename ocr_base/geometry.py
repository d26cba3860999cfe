"""Plane geometry of text regions, shared by the detector's line grouping, reading order and the
crops: rotations and the side lengths of quadrilaterals.

Conventions: image coordinates (x right, y down); a quad is 4 points TL, TR, BR, BL; an angle is in
radians, positive clockwise on screen (y down), as `arctan2(dy, dx)` of a line's direction gives it.
"""
from __future__ import annotations

import numpy as np


def rotate(points, angle: float, center=(0.0, 0.0)) -> np.ndarray:
    """Points (..., 2) rotated by `angle` about `center` -> float64 (..., 2).

    A row vector p maps to (p - c) @ R + c with R = [[cos, sin], [-sin, cos]]: the direction
    (1, 0) becomes (cos a, sin a), i.e. a line at angle 0 ends up at angle `angle`.
    """
    c, s = np.cos(angle), np.sin(angle)
    center = np.asarray(center, np.float64)
    return (np.asarray(points, np.float64) - center) @ np.array([[c, s], [-s, c]]) + center


def side_lengths(quads) -> np.ndarray:
    """Quads (..., 4, 2) -> (..., 4) float64 lengths of the sides top, right, bottom, left.

    Width of a text region: the top (0) and bottom (2) sides; height: the right (1) and left (3).
    """
    q = np.asarray(quads, np.float64)
    return np.linalg.norm(np.roll(q, -1, axis=-2) - q, axis=-1)
