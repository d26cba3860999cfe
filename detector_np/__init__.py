"""detector_np: the CRAFT text detector and its LinkRefiner in pure NumPy + Numba, with CRAFT's
post-processing and the line grouping on top. Imports nothing from trocr_np (docs/architecture.md)."""
from .craft import craft_forward
from .detect import DetectOptions, Detection, detect
from .group import group_text_box
from .lines import LineOptions, find_lines, group_lines
from .postprocess import adjust_result_coordinates, get_det_boxes
from .preprocess import normalize_mean_variance, resize_aspect_ratio, resize_linear_u8
from .refiner import refiner_forward
from .weights import load_craft, load_refiner

__all__ = [
    "DetectOptions", "Detection", "detect", "load_craft", "load_refiner", "craft_forward", "refiner_forward",
    "resize_aspect_ratio", "resize_linear_u8", "normalize_mean_variance", "get_det_boxes",
    "adjust_result_coordinates", "group_text_box", "LineOptions", "find_lines", "group_lines",
]
