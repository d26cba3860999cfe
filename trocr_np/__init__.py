"""trocr-np: TrOCR (ViT/DeiT encoder + Transformer text decoder) in pure NumPy + Numba, and the page
pipeline (CRAFT detection -> lines -> TrOCR) above it. See docs/architecture.md for the layout."""

from ocr_base.image_io import ImageError, load_image, load_pages

from .config import TrOCRConfig, load_config
from .generate import GenerationOptions, GenerationOutput, generate
from .model import TrOCRModel, load_model
from .pipeline import ErrorRecord, Line, PageOptions, PageResult, ocr_files, ocr_page
from .preprocess import preprocess
from .recognize import Recognition, recognize
from .tokenizer import decode, load_tokenizer

__all__ = ["GenerationOptions", "GenerationOutput", "Recognition", "TrOCRConfig", "TrOCRModel", "decode", "generate",
           "load_config", "load_model", "load_tokenizer", "preprocess", "recognize",
           "ErrorRecord", "ImageError", "Line", "PageOptions", "PageResult", "load_image", "load_pages", "ocr_files",
           "ocr_page"]
