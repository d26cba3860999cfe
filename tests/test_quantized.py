"""8- and 16-bit weights (trocr_np.quant, trocr_np.kernels_q).

First without torch: the kernels against their NumPy reference (dequantise, then matmul), the
conversions bit for bit, the file round trip. Then against transformers: a random TrOCR converted
to each dtype must give the logits of the HF model run on the *dequantised* weights within 1e-4;
for int8 with --quantize-encoder, whose encoder multiplies int8 x int8 (trocr_np/kernels_i8.py), the
HF model's encoder Linears quantise their inputs the same way (teacher_forced_int8_encoder).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from ocr_base.checkpoint import BFloat16Array, CheckpointError, load_safetensors, save_safetensors
from trocr_np import kernels_q
from trocr_np.encoder import linear
from trocr_np.quant import (CLIP_RATIOS, DECODE_MATRIX, ENCODER_MATRIX, PackedWeight, SCALE_SUFFIX, dequantize, file_tensors,
                            packed_params, quantize_int8, take_rows, to_bfloat16)

TOL = 1e-4
KINDS = ["bfloat16", "float16", "int8"]


def pack(w, kind):
    """float32 (N, K) -> PackedWeight of `kind`, as convert + load would make it."""
    if kind == "bfloat16":
        return PackedWeight(to_bfloat16(w), kind)
    if kind == "float16":
        return PackedWeight(w.astype(np.float16), kind)
    q, scale = quantize_int8(w)
    return PackedWeight(q, kind, scale)


def random_weight(n, k, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)


# --------------------------------------------------------------------------- kernels vs reference

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [*range(1, 10), 16, 17, kernels_q.SMALL_ROWS, kernels_q.SMALL_ROWS + 1])
# every remainder of the 4-row blocks, and each side of the switch to the reference
@pytest.mark.parametrize("threaded", [True, False])
@pytest.mark.parametrize("n, k", [(1031, 257), (7, 1), (37, 15), (33, 64), (6, 1000), (45, 1300), (19, 2100)])
# odd N, K off the vector widths (K = 15: none of the 16-lane steps); 2+ rows and K > TILE_KC: the
# multi-row kernel takes x in column slices, K = 2100 in three with a tail
def test_matmul_packed_matches_reference(kind, rows, threaded, n, k, monkeypatch):
    monkeypatch.setattr(kernels_q, "PARALLEL_MIN_BYTES", 0 if threaded else 1 << 60)
    w = pack(random_weight(n, k), kind)
    x = np.random.default_rng(rows).standard_normal((rows, k)).astype(np.float32)
    out = kernels_q.matmul_packed(x, w)
    ref = kernels_q.matmul_packed_ref(x, w)
    assert out.dtype == np.float32 and out.shape == (rows, n)
    np.testing.assert_allclose(out, ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(out, x @ dequantize(w).T, rtol=0, atol=TOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [2, 3, 4, 5, 7, 8, 16, 17, 64])
def test_multirow_kernel_same_for_any_split(kind, rows):
    """The multi-row kernel computes every output the same way wherever its register tile falls: any
    slice of the weight rows (a worker's part, a tile cut short at the end) and any group size give
    the same float32, bit for bit."""
    n, k = 45, 1300
    w = pack(random_weight(n, k), kind)
    data = w.data.view(np.uint16) if kind == "float16" else w.data
    scale = w.scale if w.scale is not None else kernels_q._NO_SCALE
    x = np.random.default_rng(rows).standard_normal((rows, k)).astype(np.float32)
    args = (scale, kernels_q._KIND[kind])
    whole = np.empty((rows, n), np.float32)
    kernels_q._matmul_tiles_packed(x, data, *args, whole, 0, n, kernels_q.TILE_KC, 16, 16, kernels_q.TILE_ROWS)
    np.testing.assert_allclose(whole, kernels_q.matmul_packed_ref(x, w), rtol=0, atol=TOL)
    for cuts, rb, gmax in (((0, 3, 4, 30, n), 16, 8), ((0, 1, 2, 3, n), 4, 4), ((0, 17, n), 8, 5)):
        parts = np.full((rows, n), np.nan, np.float32)
        for r0, r1 in zip(cuts, cuts[1:]):
            kernels_q._matmul_tiles_packed(x, data, *args, parts, r0, r1, kernels_q.TILE_KC, rb, rb, gmax)
        np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prefetch", [1, 2500, 1 << 30])  # one row ahead, a few, past the end
def test_matmul_packed_prefetch_changes_nothing(kind, prefetch, monkeypatch):
    """The prefetch hints only move cache lines: every output is the same float32 as without them."""
    for n, k in ((1031, 257), (45, 1300)):  # K in one column slice and in two
        w = pack(random_weight(n, k), kind)
        x = np.random.default_rng(5).standard_normal((6, k)).astype(np.float32)
        monkeypatch.setattr(kernels_q, "PREFETCH_BYTES", 0)
        plain = kernels_q.matmul_packed(x, w)
        monkeypatch.setattr(kernels_q, "PREFETCH_BYTES", prefetch)
        np.testing.assert_array_equal(kernels_q.matmul_packed(x, w), plain)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [1, 4, 7])
@pytest.mark.parametrize("threaded", [True, False])
def test_matmul_packed_many_equals_one_by_one(kind, rows, threaded, monkeypatch):
    """One hand-off for several matrices (a layer's q/k/v) gives each matrix's own matmul_packed,
    bit for bit, also for a matrix of fewer rows than workers and for the column-blocked kernel."""
    monkeypatch.setattr(kernels_q, "PARALLEL_MIN_BYTES", 0 if threaded else 1 << 60)
    for k in (257, 1300):
        ws = [pack(random_weight(n, k, seed=n), kind) for n in (1031, 1, 64)]
        x = np.random.default_rng(rows).standard_normal((rows, k)).astype(np.float32)
        for got, w in zip(kernels_q.matmul_packed_many(x, ws), ws):
            np.testing.assert_array_equal(got, kernels_q.matmul_packed(x, w))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [1, 4, 7])
def test_native_hand_off_equals_serial(kind, rows, monkeypatch):
    """Input rows split over the workers as native tasks (ocr_base.threads.run_native), chunks
    claimed by whichever thread is free, give the serial kernels' outputs bit for bit, for
    several matrices in one call and many calls."""
    monkeypatch.setattr(kernels_q, "PARALLEL_MIN_BYTES", 0)
    for k in (257, 1300):
        ws = [pack(random_weight(n, k, seed=n), kind) for n in (1031, 1, 64)]
        x = np.random.default_rng(k).standard_normal((rows, k)).astype(np.float32)
        monkeypatch.setattr(kernels_q, "NATIVE", False)
        monkeypatch.setattr(kernels_q, "PARALLEL_MIN_BYTES", 1 << 60)
        want = kernels_q.matmul_packed_many(x, ws)
        monkeypatch.setattr(kernels_q, "NATIVE", True)
        monkeypatch.setattr(kernels_q, "PARALLEL_MIN_BYTES", 0)
        for chunk in (1, 4096, 1 << 30):  # chunks of one tile block, of a few, one per matrix
            monkeypatch.setattr(kernels_q, "CHUNK_BYTES", chunk)
            for _ in range(20):
                for got, w in zip(kernels_q.matmul_packed_many(x, ws), want):
                    np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize("kind", KINDS)
def test_one_row_chunk_tables_follow_their_matrix(kind, monkeypatch):
    """A job's chunk table is kept per matrix (kernels_q._chunk_table): a matrix freed and
    another made in its place (often at the same id), or one sharing its stored bits under other
    scales, gets its own table, never the old one's addresses; a freed matrix's table goes with it."""
    monkeypatch.setattr(kernels_q, "PARALLEL_MIN_BYTES", 0)
    x = np.random.default_rng(3).standard_normal((1, 300)).astype(np.float32)
    for n in (700, 65, 700, 1):
        w = pack(random_weight(n, 300, seed=n), kind)
        want = x @ dequantize(w).T
        np.testing.assert_allclose(kernels_q.matmul_packed(x, w), want, rtol=0, atol=TOL)
        np.testing.assert_array_equal(kernels_q.matmul_packed(x, w), kernels_q.matmul_packed(x, w))
        if kind == "int8":  # the same stored bits under other scales: a matrix of its own
            w2 = PackedWeight(w.data, kind, w.scale * np.float32(2))
            np.testing.assert_array_equal(kernels_q.matmul_packed(x, w2), 2 * kernels_q.matmul_packed(x, w))
            del w2
        key = id(w)
        assert key in kernels_q._CHUNKS
        del w, want
        assert key not in kernels_q._CHUNKS


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_dequantises_exactly(kind):
    """x = identity picks each weight alone: the kernel's float32 value of every stored weight
    must be the reference's exactly. For float16 that is every finite bit pattern, subnormals
    and signed zeros included."""
    if kind == "float16":
        bits = np.arange(1 << 16, dtype=np.uint16)
        h = bits.view(np.float16)
        w = PackedWeight(h[np.isfinite(h)][:63488].reshape(-1, 16).copy(), kind)
    else:
        w = pack(random_weight(4096, 16, seed=3) * 1e3, kind)
    out = kernels_q.matmul_packed(np.eye(16, dtype=np.float32), w)
    np.testing.assert_array_equal(out, dequantize(w).T)


def test_bfloat16_rounds_to_nearest_even():
    one = np.float32(1.0).view(np.uint32)
    w = np.array([one, one + 0x7FFF, one + 0x8000, one + 0x8001, one + 0x18000], np.uint32).view(np.float32)
    assert to_bfloat16(w).tolist() == [0x3F80, 0x3F80, 0x3F80, 0x3F81, 0x3F82]  # ties go to even
    x = random_weight(3, 50)
    assert np.abs(dequantize(PackedWeight(to_bfloat16(x), "bfloat16")) - x).max() <= np.abs(x).max() * 2 ** -8


def test_int8_per_row_symmetric():
    w = random_weight(6, 40, seed=5)
    w[2] = 0.0  # an all-zero row stays zero
    w[4] *= 1000.0  # rows are scaled independently
    q, s = quantize_int8(w, ratios=(1.0,))  # max-abs scaling
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (6,)
    assert np.abs(q).max() == 127 and q.min() >= -127
    assert np.all(np.abs(q[[0, 1, 3, 4, 5]]).max(axis=1) == 127) and not q[2].any()
    err = np.abs(dequantize(PackedWeight(q, "int8", s)) - w)
    assert np.all(err <= s[:, None] / 2 * (1 + 1e-6))


def test_int8_scale_search_lowers_squared_error():
    """The searched scale of each row leaves no more squared error than max-abs, and less on
    heavy-tailed rows (where clipping the few largest pays); still one symmetric float32 scale per
    row, q the nearest integer to w / scale, clipped to [-127, 127]."""
    rng = np.random.default_rng(4)
    w = (rng.laplace(size=(64, 2000)) / 30).astype(np.float32)
    w[5] = 0.0
    q0, s0 = quantize_int8(w, ratios=(1.0,))
    q, s = quantize_int8(w)
    err0 = np.square(dequantize(PackedWeight(q0, "int8", s0)) - w).sum(axis=1)
    err = np.square(dequantize(PackedWeight(q, "int8", s)) - w).sum(axis=1)
    assert s.dtype == np.float32 and s.shape == (64,) and q.dtype == np.int8 and q.min() >= -127
    assert np.all(err <= err0) and np.mean(err[err0 > 0] / err0[err0 > 0]) < 0.99 and not q[5].any() and s[5] == 0
    np.testing.assert_array_equal(q, np.clip(np.rint(w / np.where(s > 0, s, 1)[:, None]), -127, 127))
    np.testing.assert_array_equal(quantize_int8(-w)[0], -q)  # symmetric: no zero point
    # each row's scale is the best of the ratios tried (brute force over every ratio)
    for n in rng.choice(64, 6, replace=False):
        errs = [np.square(quantize_int8(w[n:n + 1], (r,))[0] * quantize_int8(w[n:n + 1], (r,))[1] - w[n]).sum()
                for r in CLIP_RATIOS]
        assert err[n] <= min(errs) * (1 + 1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_linear_and_take_rows_dispatch(kind):
    w32 = random_weight(64, 24)
    w = pack(w32, kind)
    x = np.random.default_rng(1).standard_normal((2, 3, 24)).astype(np.float32)
    b = np.arange(64, dtype=np.float32)
    many = np.repeat(x, kernels_q.SMALL_ROWS // 6 + 1, axis=1)  # more rows than the kernel takes
    for xs in (x[:, :1], x, many):  # 2 and 6 rows: the kernel; then the BLAS fallback
        np.testing.assert_allclose(linear(xs, w, b), xs @ dequantize(w).T + b, rtol=0, atol=TOL)
    ids = np.array([[5, 0], [63, 5]])
    np.testing.assert_array_equal(take_rows(w, ids), dequantize(w)[ids])
    assert take_rows(w, ids).dtype == np.float32


# --------------------------------------------------------------------------- files

def test_bf16_file_round_trip_stays_16_bit(tmp_path):
    bits = to_bfloat16(random_weight(8, 5))
    path = tmp_path / "w.safetensors"
    save_safetensors({"a": BFloat16Array(bits), "b": np.arange(3, dtype=np.int8), "c": np.ones(7, np.float32)}, path)
    kept = load_safetensors(path, keep_bf16=True)
    assert isinstance(kept["a"], BFloat16Array) and kept["a"].bits.dtype == np.uint16
    assert not kept["a"].bits.flags.writeable  # a view into the memory map, not a copy
    np.testing.assert_array_equal(kept["a"].bits, bits)
    np.testing.assert_array_equal(load_safetensors(path)["a"], BFloat16Array(bits).to_float32())
    np.testing.assert_array_equal(kept["b"], np.arange(3, dtype=np.int8))
    safetensors = pytest.importorskip("safetensors")
    with safetensors.safe_open(str(path), "np") as f:  # the reference reader agrees on names and layout
        assert sorted(f.keys()) == ["a", "b", "c"]
        np.testing.assert_array_equal(f.get_tensor("c"), np.ones(7, np.float32))


def test_file_tensors_table():
    names = {"decoder.model.decoder.layers.0.fc1.weight": (8, 4), "decoder.model.decoder.layers.0.fc1.bias": (8,),
             "decoder.model.decoder.embed_positions.weight": (6, 4),
             "encoder.encoder.layer.0.intermediate.dense.weight": (8, 4)}
    t = {k: random_weight(*s) if len(s) == 2 else np.ones(s, np.float32) for k, s in names.items()}
    q = file_tensors(t, "int8")
    assert q["decoder.model.decoder.layers.0.fc1.weight"].dtype == np.int8
    assert q["decoder.model.decoder.layers.0.fc1.weight" + SCALE_SUFFIX].shape == (8,)
    assert {q[k].dtype for k in names if k != "decoder.model.decoder.layers.0.fc1.weight"} == {np.dtype(np.float32)}
    assert file_tensors(t, "int8", quantize_encoder=True)["encoder.encoder.layer.0.intermediate.dense.weight"].dtype \
        == np.int8
    b = file_tensors(t, "bfloat16")
    assert isinstance(b["decoder.model.decoder.layers.0.fc1.weight"], BFloat16Array)
    assert {b[k].dtype for k in names if k != "decoder.model.decoder.layers.0.fc1.weight"} == {np.dtype(np.float32)}
    assert all(isinstance(v, BFloat16Array) for k, v in file_tensors(t, "bfloat16", quantize_encoder=True).items()
               if k.endswith("fc1.weight") or k.endswith("intermediate.dense.weight"))
    with pytest.raises(ValueError, match="quantize_encoder"):
        file_tensors(t, "float16", quantize_encoder=True)
    with pytest.raises(CheckpointError, match="overflows float16"):
        file_tensors({"x": np.full((2, 2), 1e6, np.float32)}, "float16")

    loaded = packed_params(q)
    assert isinstance(loaded["decoder.model.decoder.layers.0.fc1.weight"], PackedWeight)
    assert SCALE_SUFFIX not in "".join(loaded)
    with pytest.raises(CheckpointError, match="needs float scales"):
        packed_params({k: v for k, v in q.items() if not k.endswith(SCALE_SUFFIX)}, "f.safetensors")
    bad = dict(q, **{"decoder.model.decoder.layers.0.fc1.weight" + SCALE_SUFFIX: np.ones(3, np.float32)})
    with pytest.raises(CheckpointError, match=r"f\.safetensors.*shape \(8,\)"):
        packed_params(bad, "f.safetensors")


def test_name_patterns():
    assert DECODE_MATRIX.match("decoder.model.decoder.layers.11.encoder_attn.out_proj.weight")
    assert DECODE_MATRIX.match("decoder.output_projection.weight")
    assert not DECODE_MATRIX.match("decoder.model.decoder.layers.1.self_attn.q_proj.bias")
    assert not DECODE_MATRIX.match("decoder.model.decoder.embed_positions.weight")
    assert ENCODER_MATRIX.match("encoder.encoder.layer.3.attention.attention.query.weight")
    assert not ENCODER_MATRIX.match("encoder.embeddings.patch_embeddings.projection.weight")


# --------------------------------------------------------------------------- against transformers

FORMATS = [("bfloat16", False), ("bfloat16", True), ("float16", False), ("int8", False), ("int8", True)]


@pytest.fixture(scope="module")
def hf_sources(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from conftest import make_hf_trocr
    out = {}
    for preset in ("tiny", "small"):  # tied + gelu + ViT; untied + relu + DeiT with qkv bias
        out[preset] = make_hf_trocr(tmp_path_factory.mktemp(preset), preset)[1]
    return out


def fake_quant_rows(x):
    """torch: kernels_i8's per-row activation quantisation, quantised and dequantised: the same
    float32 operations and ties-to-even rounding, so on the same input it is bit for bit ours."""
    import torch
    lo = torch.clamp(x.amin(dim=-1, keepdim=True), max=0)
    hi = torch.clamp(x.amax(dim=-1, keepdim=True), min=0)
    s = torch.where(hi > lo, (hi - lo) / 255, torch.ones_like(hi))
    z = torch.round(-lo / s)
    return (torch.clamp(torch.round(x / s) + z, 0, 255) - z) * s


def teacher_forced_int8_encoder(hf, params, cfg, px, monkeypatch):
    """Our int8 x int8 encoder on px, held to transformers step by step: returns (ours, the reference).

    Dynamic activation quantisation is discontinuous: where torch's and our float32 layer norms
    differ in the last bit, a value can round to the next integer, and the one-quantum step then
    grows through the layers (a random 2-layer DeiT: 16 such values at the first Linear, a
    0.04-wide encoder output after two layers, whoever computes it). So the reference takes our
    rounding decisions: each encoder Linear of `hf` checks that its input equals the one our Linear
    got (within TOL: layer norms, attention, GELU, residuals are compared here) and then runs on
    fake_quant_rows of *ours*. Every other step is torch's own on the same inputs."""
    import torch

    from trocr_np import encoder as E
    from trocr_np.kernels_i8 import QuantizedRows
    names = {}  # id(stored int8 matrix) -> its on-disk name
    for k, v in params.items():
        if isinstance(v, PackedWeight) and ENCODER_MATRIX.match(k):
            names[id(v.data)] = k
    seen = {}
    real = E.matmul_i8

    def record(x, w, bias=None, out=None, kernel=None, **kw):
        seen[names[id(w.q)]] = np.array(x.x if isinstance(x, QuantizedRows) else x)
        return real(x, w, bias, out, kernel, **kw)
    monkeypatch.setattr(E, "matmul_i8", record)
    monkeypatch.setattr(E, "n_workers", lambda: 1)  # one row slice: each Linear sees all its rows at once
    ours = E.encoder_forward(params, cfg, px)
    # transformers 5 names the modules apart from the checkpoint (q_proj, mlp.fc1, ...); per layer they
    # come in the order of the on-disk names: query, key, value, output, intermediate, output
    linears = [m for n, m in hf.encoder.named_modules() if isinstance(m, torch.nn.Linear) and "pooler" not in n]
    order = [f"encoder.encoder.layer.{i}.{n}.weight" for i in range(cfg.encoder.num_hidden_layers)
             for n in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
                       "attention.output.dense", "intermediate.dense", "output.dense")]
    assert len(linears) == len(order) and set(seen) == set(order)
    gaps = []

    def hook(name):
        def pre(m, args):
            x = seen[name].reshape(args[0].shape)
            gaps.append(float(np.abs(args[0].numpy() - x).max()))
            return (fake_quant_rows(torch.from_numpy(x)),)
        return pre
    handles = [m.register_forward_pre_hook(hook(n)) for m, n in zip(linears, order)]
    with torch.inference_mode():
        ref = hf.encoder(pixel_values=torch.from_numpy(px)).last_hidden_state.numpy()
    for h in handles:
        h.remove()
    assert len(gaps) == len(order) and max(gaps) < TOL, gaps
    return ours, ref


def dequantised_hf_model(model_dir, hf_dir, tmp):
    """transformers' model on the weights our folder holds, dequantised to float32."""
    from transformers import VisionEncoderDecoderModel
    ref_dir = tmp / "ref"
    shutil.copytree(hf_dir, ref_dir)
    raw = packed_params(load_safetensors(model_dir, keep_bf16=True))
    save_safetensors({k: np.ascontiguousarray(dequantize(v), np.float32) for k, v in raw.items()},
                     ref_dir / "model.safetensors")
    return VisionEncoderDecoderModel.from_pretrained(str(ref_dir), attn_implementation="eager").eval()


@pytest.mark.parametrize("dtype,quantize_encoder", FORMATS)
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_logits_match_hf_on_dequantised_weights(preset, dtype, quantize_encoder, hf_sources, tmp_path, monkeypatch):
    import torch
    from conftest import random_line_images

    from trocr_np.convert import convert_trocr
    from trocr_np.decoder import decoder_forward, init_cache
    from trocr_np.encoder import encoder_forward
    from trocr_np.model import load_model
    from trocr_np.preprocess import preprocess

    hf_dir = hf_sources[preset]
    dst = convert_trocr(hf_dir, tmp_path / "ours", dtype=dtype, quantize_encoder=quantize_encoder)
    model = load_model(dst)
    cfg, params = model.config, model.params
    packed = {k: v for k, v in params.items() if isinstance(v, PackedWeight)}
    encoder_packed = dtype == "float16" or quantize_encoder
    assert packed and set(packed) == {k for k in params if DECODE_MATRIX.match(k)
                                      or (encoder_packed and ENCODER_MATRIX.match(k))}
    assert all(v.kind == dtype and not v.data.flags.writeable for v in packed.values())  # memory-mapped bits
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for k, v in params.items() if k not in packed)

    hf = dequantised_hf_model(dst, hf_dir, tmp_path)
    px = preprocess(random_line_images(3, seed=7), cfg)
    rng = np.random.default_rng(6)
    ids = rng.integers(5, cfg.decoder.vocab_size, (3, 10))
    ids[:, 0] = cfg.decoder_start_token_id
    if dtype == "int8" and quantize_encoder:  # int8 x int8 encoder (kernels_i8): activations quantised per row
        enc, enc_ref = teacher_forced_int8_encoder(hf, params, cfg, px, monkeypatch)
        assert np.abs(enc - enc_ref).max() < TOL
        # the cross-attention K/V projections read the encoder's rows in int8 too: fed fake_quant_rows of
        # ours (the input they get from torch's encoder output is checked equal to ours first)
        assert not cfg.has_enc_to_dec_proj
        cross = [hf.decoder.get_submodule(f"model.decoder.layers.{i}.encoder_attn.{n}")
                 for i in range(cfg.decoder.decoder_layers) for n in ("k_proj", "v_proj")]
        gaps = []

        def cross_in(m, args):
            gaps.append(float(np.abs(args[0].numpy() - enc).max()))
            return (fake_quant_rows(torch.from_numpy(enc)),)
        handles = [m.register_forward_pre_hook(cross_in) for m in cross]
        with torch.inference_mode():
            ref = hf(encoder_outputs=(torch.from_numpy(enc_ref),), decoder_input_ids=torch.from_numpy(ids)).logits.numpy()
        for h in handles:
            h.remove()
        assert len(gaps) == len(cross) and max(gaps) < TOL
    else:
        with torch.inference_mode():
            ref = hf(pixel_values=torch.from_numpy(px), decoder_input_ids=torch.from_numpy(ids)).logits.numpy()
        enc = encoder_forward(params, cfg, px)
    cache = init_cache(params, cfg, enc, max_len=10)
    assert np.abs(decoder_forward(params, cfg, ids, cache) - ref).max() < TOL      # all positions at once
    for rows in (slice(0, 1), slice(0, 3)):                                         # 1-row and 3-row steps
        cache = init_cache(params, cfg, enc[rows], max_len=10)
        steps = np.concatenate([decoder_forward(params, cfg, ids[rows, t:t + 1], cache) for t in range(10)], axis=1)
        assert np.abs(steps - ref[rows]).max() < TOL
