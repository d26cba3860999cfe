"""trocr-np: TrOCR (ViT/DeiT encoder + Transformer text decoder) in pure NumPy + Numba."""
