"""Checkpoint files without torch: one place to import the readers and the writer from.

  load_safetensors(path)   safetensors, memory-mapped and validated      (ocr_base.safetensors_io)
  load_torch(path)         `torch.save` zip and legacy pickles, restricted (ocr_base.torch_pickle)
  save_safetensors(...)    written atomically                             (ocr_base.safetensors_io)
  check_tensors(...)       names / shapes / dtypes against what a config implies (ocr_base.tensors)

Every malformed, truncated or hostile file raises CheckpointError (a ValueError) naming the file, and
the tensor when one is involved; UnsafeCheckpointError when a pickle asks for a global we don't admit.
"""
from .safetensors_io import BFloat16Array, load_safetensors, safetensors_metadata, save_safetensors
from .tensors import CheckpointError, UnsafeCheckpointError, check_tensors, in_folder, load_sharded
from .torch_pickle import load_torch

__all__ = ["BFloat16Array", "CheckpointError", "UnsafeCheckpointError", "check_tensors", "in_folder", "load_safetensors",
           "load_sharded", "load_torch", "safetensors_metadata", "save_safetensors"]
