"""detector_np: the CRAFT text detector and its LinkRefiner in pure NumPy + Numba."""
