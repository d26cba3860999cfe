"""trocr-np: TrOCR (ViT/DeiT encoder + Transformer text decoder) in pure NumPy + Numba."""

from .config import TrOCRConfig, load_config
from .generate import GenerationOutput, generate
from .image_io import ImageError, load_image, load_pages
from .model import TrOCRModel, load_model
from .pipeline import ErrorRecord, Line, PageResult, ocr_files, ocr_page
from .preprocess import preprocess
from .recognize import Recognition, recognize
from .tokenizer import decode, load_tokenizer

__all__ = ["GenerationOutput", "Recognition", "TrOCRConfig", "TrOCRModel", "decode", "generate", "load_config",
           "load_model", "load_tokenizer", "preprocess", "recognize",
           "ErrorRecord", "ImageError", "Line", "PageResult", "load_image", "load_pages", "ocr_files", "ocr_page"]
