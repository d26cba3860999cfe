"""8- and 16-bit weights: how they are stored, how they are packed in memory, what they mean.

One decoded token reads every decoder weight once, so float32 decoding runs at the memory
bandwidth floor; fewer bytes per weight is the only way below it. A converted folder may store:

  dtype      on disk (model.safetensors)                        in memory (load_model)
  float32    every floating tensor F32                          float32 arrays (unchanged)
  float16    every floating tensor F16                          decode and encoder matrices: PackedWeight,
                                                                  the rest upcast to float32 once
  bfloat16   decode matrices BF16, the rest F32                 decode matrices: PackedWeight
  int8       decode matrices I8 + `<name>.scale` F32 (N,)       decode matrices: PackedWeight
             each, the rest F32
  quantize_encoder=True (bfloat16, int8): the encoder's matrices are stored that way too, and are
  PackedWeight in memory.

The *decode matrices* are what a decode step streams: the decoder's self- and cross-attention
q/k/v/out projections, fc1, fc2, the token embedding (the output projection when tied) and an
untied output projection. They stay memory-mapped in their stored bits and the Numba kernels of
`trocr_np.kernels_q` turn them into float32 inside the dot product; all arithmetic stays float32.
The encoder's matrices (attention, MLP) stay packed too and are made ready one layer at a time,
just before the layer runs (~7 M weights at base size, freed after: memory stays near the file's
size), by `encoder.layer_matrices`: the encoder is compute-bound, so what its format buys is
arithmetic, not bandwidth.
  bfloat16, float16: dequantised to float32 for BLAS (smaller file and memory, float32 speed).
  int8: int8 x int8 arithmetic (trocr_np.kernels_i8): each Linear's input is quantised per row at run
        time, as ONNX Runtime's dynamic quantisation does, and multiplied with AVX-512 VNNI. This is
        the one format whose numbers are not those of float32 arithmetic on the dequantised weights:
        they are those of the same model with each encoder Linear's input quantised and dequantised,
        and the decoder's cross-attention K/V projections likewise (they too run once per image on
        the encoder's rows: `int8_encoder`). kernels_i8 has the formula; tests/test_quantized.py
        holds it to transformers so modified.

int8 is symmetric per output channel (per row of the torch (out, in) matrix):
    scale[n] = r[n] * max_k |w[n, k]| / 127,   q[n, k] = round(w[n, k] / scale[n]) clipped to [-127, 127],
    w ~ q * scale[:, None]
with the clip ratio r[n] among CLIP_RATIOS (0.50, 0.51, ..., 1.00) that leaves the row the least
squared error (r = 1 is max-abs scaling). On the bundled model that is only 1-2% less squared error
than max-abs: rows of 256-1024 weights have few outliers worth clipping.
bfloat16 keeps the top 16 bits of the float32, rounded to nearest even.

Accuracy (benchmarks/bench_quant_accuracy.py has the tables): the logits equal those of float32
arithmetic on the dequantised weights (tests/test_quantized.py). Against the float32 weights, a
greedy token changes only where float32's top two logits are nearly tied: bfloat16 moves the
bundled model's logits by ~0.014 (median of the largest change per step), int8 by ~0.06, and 0.5%
of its steps on held-out lines have a top-1/top-2 gap under 0.01 (2.3% under 0.05). Each flip then
shifts the rest of its line, so a handful of flips costs 1-5 points of position-wise agreement.
Measured and not kept: bfloat16 with the embedding, output projection and last layer in float16
(as small) changes which near-ties flip, not how many (held-out lines 5 -> 2 flipped lines, photo
crops 0 -> 2); int8 rounding chosen with calibration data (GPTQ) removes ~1 in 19 flips, not worth a
calibration step in convert. So every matrix of a format is stored in that format.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ocr_base.checkpoint import BFloat16Array, CheckpointError

DTYPES = ("float32", "float16", "bfloat16", "int8")
SCALE_SUFFIX = ".scale"  # int8 tensor `<name>` has its float32 scales in `<name>.scale`

DECODE_MATRIX = re.compile(r"^decoder\.model\.decoder\.(layers\.\d+\.(self_attn|encoder_attn)\.(q|k|v|out)_proj"
                           r"|layers\.\d+\.fc[12]|embed_tokens)\.weight$|^decoder\.output_projection\.weight$")
ENCODER_MATRIX = re.compile(r"^encoder\.encoder\.layer\.\d+\.(attention\.attention\.(query|key|value)"
                            r"|attention\.output\.dense|intermediate\.dense|output\.dense)\.weight$")


@dataclass(frozen=True)
class PackedWeight:
    """An (N, K) weight matrix kept in fewer bits; it stands for the float32 matrix `dequantize(self)`.

    data: (N, K) uint16 bfloat16 bits | float16 | int8;  kind: "bfloat16" | "float16" | "int8";
    scale: (N,) float32 per-row scales for int8, else None."""
    data: np.ndarray
    kind: str
    scale: np.ndarray | None = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):  # what it computes as: the shape/dtype check sees a float32 matrix
        return np.dtype(np.float32)

    @property
    def nbytes(self):
        return self.data.nbytes + (self.scale.nbytes if self.scale is not None else 0)


# --------------------------------------------------------------------------- the formats (references)

def to_bfloat16(w: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest, ties to even (as torch's .to(bfloat16))."""
    u = np.ascontiguousarray(w, np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)


# Clip ratios tried per row by the int8 scale search: scale = ratio * max|w| / 127.
CLIP_RATIOS = np.linspace(0.5, 1.0, 51, dtype=np.float32)
_SEARCH_CHUNK = 1 << 20  # weights per block of rows searched at once (bounds the temporaries)


def _round_int8(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """q = round(w / scale) per row, in [-127, 127]; an all-zero row (scale 0) stays zero."""
    safe = np.where(scale > 0, scale, np.float32(1))
    return np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)


def int8_scales(w: np.ndarray, ratios=CLIP_RATIOS) -> np.ndarray:
    """(N, K) float32 -> (N,) float32: per row, the scale among ratio * max|w| / 127 (ratio in
    `ratios`) whose rounding leaves the least squared error sum_k (q[n, k] * scale - w[n, k])^2.
    ratios=(1.0,) is plain max-abs scaling."""
    amax = np.abs(w).max(axis=1)
    best = (amax / np.float32(127)).astype(np.float32)
    rows = max(1, _SEARCH_CHUNK // max(1, w.shape[1]))
    for lo in range(0, w.shape[0], rows):
        blk, a = w[lo:lo + rows], amax[lo:lo + rows]
        err = np.full(len(blk), np.inf)
        for r in ratios:
            s = (a * np.float32(r) / np.float32(127)).astype(np.float32)
            e = np.square(_round_int8(blk, s) * s[:, None] - blk).sum(axis=1, dtype=np.float64)
            better = e < err
            err[better], best[lo:lo + rows][better] = e[better], s[better]
    return best


def quantize_int8(w: np.ndarray, ratios=CLIP_RATIOS) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) float -> (q (N, K) int8, scale (N,) float32), symmetric per row, the scale chosen
    by `int8_scales` (module docstring)."""
    w = np.asarray(w, np.float32)
    scale = int8_scales(w, ratios)
    return _round_int8(w, scale), scale


def dequantize(w) -> np.ndarray:
    """The float32 matrix a weight stands for (a float32 array is returned as it is)."""
    if isinstance(w, np.ndarray):
        return w
    if w.kind == "bfloat16":
        return BFloat16Array(w.data).to_float32()
    if w.kind == "float16":
        return w.data.astype(np.float32)
    return w.data.astype(np.float32) * w.scale[:, None]


def take_rows(w, ids) -> np.ndarray:
    """w[ids] as float32 (an embedding lookup): only the rows asked for are dequantised."""
    if isinstance(w, np.ndarray):
        return w[ids].astype(np.float32, copy=False)
    rows = PackedWeight(w.data[np.ravel(ids)], w.kind, None if w.scale is None else w.scale[np.ravel(ids)])
    return dequantize(rows).reshape(*np.shape(ids), w.shape[1])


# --------------------------------------------------------------------------- files

def file_tensors(tensors: dict[str, np.ndarray], dtype: str, quantize_encoder: bool = False, where="weights"):
    """float tensors under on-disk names -> what convert writes for `dtype` (module docstring table):
    {name: ndarray | BFloat16Array}, with `<name>.scale` added beside each int8 matrix."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if quantize_encoder and dtype not in ("bfloat16", "int8"):
        raise ValueError(f"quantize_encoder applies to dtype 'bfloat16' or 'int8' ({dtype} files store every "
                         f"tensor as {dtype}); got dtype={dtype!r}")
    out = {}
    for name, v in tensors.items():
        packed = DECODE_MATRIX.match(name) or (quantize_encoder and ENCODER_MATRIX.match(name))
        if not np.issubdtype(v.dtype, np.floating):
            out[name] = v
        elif dtype == "int8" and packed:
            out[name], out[name + SCALE_SUFFIX] = quantize_int8(v)
        elif dtype == "bfloat16" and packed:
            out[name] = BFloat16Array(to_bfloat16(v))
        else:
            with np.errstate(over="ignore"):  # reported below, naming the tensor
                out[name] = v.astype("float16" if dtype == "float16" else "float32", copy=False)
            if dtype == "float16" and not np.all(np.isfinite(out[name])):
                raise CheckpointError(f"{where}: tensor {name!r} overflows float16 (|values| > 65504); "
                                      "use --dtype bfloat16 or float32")
    return out


def int8_encoder(params: dict) -> bool:
    """Whether the encoder's matrices are int8 (an int8 --quantize-encoder folder). Then every Linear
    that reads the encoder's rows multiplies int8 x int8 (trocr_np.kernels_i8): the encoder's own and
    the decoder's cross-attention K/V projections of its output (once per image, 577-row GEMMs)."""
    return any(isinstance(v, PackedWeight) and v.kind == "int8" and ENCODER_MATRIX.match(k) for k, v in params.items())


def packed_params(raw: dict, where="weights") -> dict:
    """Tensors as load_safetensors(keep_bf16=True) returns them -> the params the model computes with:
    decode matrices as PackedWeight (memory-mapped bits), every other tensor float32."""
    scales = {k[:-len(SCALE_SUFFIX)]: v for k, v in raw.items() if k.endswith(SCALE_SUFFIX)}
    out = {}
    for name, v in raw.items():
        if name.endswith(SCALE_SUFFIX) and name[:-len(SCALE_SUFFIX)] in raw:
            continue
        if isinstance(v, BFloat16Array):
            w = PackedWeight(v.bits, "bfloat16")
        elif v.dtype == np.int8 and v.ndim == 2:
            s = scales.get(name)
            if s is None or s.shape != (v.shape[0],) or s.dtype.kind != "f":
                got = "missing" if s is None else f"of shape {s.shape}, dtype {s.dtype}"
                raise CheckpointError(f"{where}: int8 tensor {name!r} needs float scales {name + SCALE_SUFFIX!r} "
                                      f"of shape ({v.shape[0]},); {got}")
            w = PackedWeight(v, "int8", np.asarray(s, np.float32))
        elif v.dtype == np.float16 and v.ndim == 2:
            w = PackedWeight(v, "float16")
        else:
            out[name] = v.astype(np.float32) if v.dtype.kind == "f" and v.dtype != np.float32 else v
            continue
        out[name] = w if DECODE_MATRIX.match(name) or ENCODER_MATRIX.match(name) else dequantize(w)
    return out

