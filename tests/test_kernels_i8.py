"""int8 x int8 encoder products (trocr_np/kernels_i8.py): the kernel against exact integer
arithmetic and against its float32 reference, the quantisation bit for bit, one Linear against torch,
and the encoder's fast layer against its readable one. The whole model against transformers is in
tests/test_quantized.py (int8 with --quantize-encoder)."""
from __future__ import annotations

import numpy as np
import pytest

from trocr_np import kernels_i8
from trocr_np.kernels_i8 import (AMX_ROWS, MB, MR, NR, HAVE_VNNI, amx_ready, matmul_i8, matmul_i8_ref, pack_i8,
                                 quantize_rows_ref)

TOL = 1e-4
needs_vnni = pytest.mark.skipif(not HAVE_VNNI, reason="this CPU has no AVX-512 VNNI: matmul_i8 is the reference")
# each integer kernel this machine can run; the others are skipped (their CPUs test them)
KERNELS = [pytest.param("vnni", marks=needs_vnni),
           pytest.param("amx", marks=pytest.mark.skipif(not amx_ready(), reason="no AMX int8 here (or not permitted)"))]


def operands(m, k, n, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * scale).astype(np.float32)
    q_w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    s_w = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    return x, q_w, s_w, b


def exact(x, q_w, s_w, b=None):
    """float64 of the integer product: (((u - z) @ q_w.T) * s_x * s_w) (+ b)."""
    u, s, z = quantize_rows_ref(x)
    q = u.astype(np.int64) - z[:, None]
    y = (q @ q_w.astype(np.int64).T) * s[:, None].astype(np.float64) * s_w.astype(np.float64)
    return y + b if b is not None else y


def test_quantize_rows_matches_its_definition():
    x, *_ = operands(6, 37, 1)
    x[1] = 0                      # all-zero row: scale 1, zero point 0
    x[2] = np.abs(x[2])           # no negatives: z = 0
    x[3] = -np.abs(x[3])          # no positives: z = 255
    x[4, 5] = -0.0
    u, s, z = quantize_rows_ref(x)
    assert u.dtype == np.uint8 and s.dtype == np.float32 and z.dtype == np.int32
    assert s[1] == 1 and z[1] == 0 and not u[1].any()
    assert z[2] == 0 and u[2].max() == 255 and z[3] == 255 and u[3].min() == 0
    lo, hi = np.minimum(x.min(1), 0), np.maximum(x.max(1), 0)
    rows = [0, 2, 3, 4, 5]
    np.testing.assert_array_equal(s[rows], (hi - lo)[rows] / np.float32(255))
    np.testing.assert_array_equal(z, np.rint(-lo / s))
    np.testing.assert_array_equal(u, np.clip(np.rint(x / s[:, None]) + z[:, None], 0, 255))
    dq = (u.astype(np.float32) - z[:, None]) * s[:, None]
    assert np.abs(dq - x).max() <= 0.5 * s.max() * (1 + 1e-6)   # half a step at most: nothing clipped away
    assert (dq[x == 0] == 0).all()                               # zero is exact


@needs_vnni
def test_kernel_quantises_bit_for_bit():
    x, *_ = operands(11, 50, 1, scale=7)
    x[0, :4] = [0.5, 1.5, 2.5, -2.5]   # ties, with the row's range made 255 wide below: s = 1
    x[0, 4:] = np.clip(x[0, 4:], -100, 150)
    x[0, 4], x[0, 5] = -100, 155
    x[1, 3] = -0.0
    x[2] = 0
    u = np.empty((11, 52), np.uint8)
    s, z = np.empty(11, np.float32), np.empty(11, np.int32)
    kernels_i8._quantize_rows(x, x.view(np.int32), u, s, z)
    u_ref, s_ref, z_ref = quantize_rows_ref(x)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(z, z_ref)
    np.testing.assert_array_equal(u[:, :50], u_ref)
    assert (u[:, 50:] == 0).all()                        # padding (its weights are zero)
    assert s[0] == 1 and z[0] == 100
    np.testing.assert_array_equal(u[0, :4].astype(int) - 100, [0, 2, 2, -2])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("m", [1, MR - 1, MR, MR + 1, AMX_ROWS - 1, AMX_ROWS + 1, MB - 1, MB + MR + 3, 2 * MB,
                               2 * MB + AMX_ROWS + 17])   # every tile/block remainder of both kernels
@pytest.mark.parametrize("k, n", [(4, 1), (768, 96), (13, NR + 5), (3072, 40), (1, 3), (100, 64)])  # K, N off the grids
def test_kernel_is_the_exact_integer_product(kernel, m, k, n):
    x, q_w, s_w, b = operands(m, k, n, seed=m * 31 + k)
    want = exact(x, q_w, s_w, b)
    got = matmul_i8(x, pack_i8(q_w, s_w), b, kernel=kernel)
    assert got.dtype == np.float32 and got.shape == (m, n)
    # integer sums are exact: only the float32 rounding of the products and the bias remain
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(got, matmul_i8_ref(x, q_w, s_w) + b, rtol=0, atol=TOL * np.abs(want).max())
    np.testing.assert_allclose(matmul_i8(x, pack_i8(q_w, s_w), kernel=kernel), want - b, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_extremes_do_not_overflow(kernel):
    """The largest sums: every activation at +-127 against weights at -127 .. 127, K = 3072."""
    k, n = 3072, 64
    x = np.full((AMX_ROWS + 1, k), 255, np.float32)   # s_x = 1, z = 0, u = 255
    x[1::2] = -255                                    # s_x = 1, z = 255, u = 0
    q_w = np.full((n, k), 127, np.int8)
    q_w[1::2] = -127
    s_w = np.ones(n, np.float32)
    got = matmul_i8(x, pack_i8(q_w, s_w), kernel=kernel)
    np.testing.assert_array_equal(got, exact(x, q_w, s_w).astype(np.float32))
    assert np.abs(got).max() == 255 * 127 * k


@pytest.mark.skipif(not amx_ready(), reason="no AMX int8 here (or not permitted)")
@pytest.mark.parametrize("m, k, n", [(2 * 577, 768, 3072), (77, 3072, 768), (33, 64, 33)])
def test_amx_and_vnni_are_bit_for_bit_equal(m, k, n):
    """The same integer sums and the same epilogue: not a last bit apart (also in the encoder's shapes)."""
    x, q_w, s_w, b = operands(m, k, n, seed=m + n)
    w = pack_i8(q_w, s_w)
    np.testing.assert_array_equal(matmul_i8(x, w, b, kernel="amx"), matmul_i8(x, w, b, kernel="vnni"))


@pytest.mark.parametrize("kernel", KERNELS)
def test_out_argument_and_row_slices(kernel):
    x, q_w, s_w, b = operands(40, 64, 48, seed=3)
    w = pack_i8(q_w, s_w)
    big = np.full((50, 48), np.nan, np.float32)
    matmul_i8(x[:20], w, b, out=big[5:25], kernel=kernel)
    matmul_i8(x[20:], w, b, out=big[25:45], kernel=kernel)
    np.testing.assert_array_equal(big[5:45], matmul_i8(x, w, b, kernel=kernel))
    assert np.isnan(big[:5]).all() and np.isnan(big[45:]).all()


def test_reference_route_gives_the_same_numbers():
    """kernel="ref" (what a CPU without VNNI runs) is matmul_i8_ref: the kernel within float32 rounding."""
    x, q_w, s_w, b = operands(30, 200, 70, seed=5)
    w = pack_i8(q_w, s_w)
    ref = matmul_i8(x, w, b, kernel="ref")
    np.testing.assert_array_equal(ref, matmul_i8_ref(x, q_w, s_w) + b)
    np.testing.assert_allclose(matmul_i8(x, w, b), ref, rtol=0, atol=TOL * np.abs(ref).max())


def test_kernel_choice_is_checked():
    x, q_w, s_w, b = operands(3, 8, 4)
    w = pack_i8(q_w, s_w)
    with pytest.raises(ValueError, match="kernel must be"):
        matmul_i8(x, w, kernel="avx2")
    for kernel in ("amx", "vnni"):
        if kernel == "amx" and not amx_ready() or kernel == "vnni" and not HAVE_VNNI:
            with pytest.raises(ValueError, match="cannot run"):
                matmul_i8(x, w, kernel=kernel)


def test_empty_inputs():
    x, q_w, s_w, b = operands(0, 16, 8)
    assert matmul_i8(x, pack_i8(q_w, s_w), b).shape == (0, 8)


def test_one_linear_matches_torch():
    """torch F.linear on the quantised-dequantised input and weights: the same numbers within 1e-4
    (weights of a trained layer's size, |w| <= 0.05, so outputs of order 1)."""
    torch = pytest.importorskip("torch")
    from test_quantized import fake_quant_rows
    x, q_w, _, b = operands(300, 384, 1536, seed=9)
    s_w = np.random.default_rng(10).uniform(0.01, 0.05, 1536).astype(np.float32) / 127
    with torch.inference_mode():
        want = torch.nn.functional.linear(fake_quant_rows(torch.from_numpy(x)),
                                          torch.from_numpy(q_w.astype(np.float32) * s_w[:, None]),
                                          torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(matmul_i8(x, pack_i8(q_w, s_w), b), want, rtol=0, atol=TOL)


@pytest.mark.parametrize("n, k", [(1, 1), (32, 4), (33, 5), (768, 3072)])
def test_packing_matches_its_numpy_form(n, k):
    q_w = np.random.default_rng(n + k).integers(-127, 128, (n, k)).astype(np.int8)
    panels, colsum = kernels_i8.pack_i8_ref(q_w)
    got = np.empty_like(panels), np.empty_like(colsum)
    kernels_i8._pack_panels(q_w, *got)
    np.testing.assert_array_equal(got[0], panels)
    np.testing.assert_array_equal(got[1], colsum)


@needs_vnni
def test_rows_quantised_once_give_the_same_product():
    x, q_w, s_w, b = operands(40, 96, 64, seed=11)
    w = pack_i8(q_w, s_w)
    xq = kernels_i8.quantize_rows(x)
    np.testing.assert_array_equal(matmul_i8(xq, w, b), matmul_i8(x, w, b))
    np.testing.assert_array_equal(matmul_i8(xq, w, b, kernel="ref"), matmul_i8(x, w, b, kernel="ref"))
    if amx_ready():
        np.testing.assert_array_equal(matmul_i8(xq, w, b, kernel="amx"), matmul_i8(x, w, b, kernel="amx"))


@pytest.mark.parametrize("kernel", ["ref"] + KERNELS)
@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_activation_in_the_kernels_pass_is_bias_act(kernel, act):
    """act= gives kernels.bias_act_'s numbers on the kernel's own product, bit for bit."""
    from trocr_np.kernels import bias_act_
    x, q_w, s_w, b = operands(2 * MB + 5, 96, 70, seed=21)
    w = pack_i8(q_w, s_w)
    want = bias_act_(matmul_i8(x, w, kernel=kernel), b, act)
    np.testing.assert_array_equal(matmul_i8(x, w, b, kernel=kernel, act=act), want)


@pytest.mark.parametrize("kernel", ["ref"] + KERNELS)
@pytest.mark.parametrize("m", [1, AMX_ROWS + 3, 2 * MB + AMX_ROWS + 17])   # one block, a remainder, split over workers
def test_quantized_output_is_quantize_rows_of_it(kernel, m):
    """quantized=True: the product (and its activation) as QuantizedRows, the same numbers as
    quantize_rows of the plain result, and that input gives the next product unchanged."""
    x, q_w, s_w, b = operands(m, 64, 100, seed=m)
    w = pack_i8(q_w, s_w)
    plain = matmul_i8(x, w, b, kernel=kernel, act="gelu")
    got = matmul_i8(x, w, b, kernel=kernel, act="gelu", quantized=True)
    assert isinstance(got, kernels_i8.QuantizedRows) and got.shape == (m, 100)
    np.testing.assert_array_equal(got.x, plain)
    want = kernels_i8.quantize_rows(plain)
    for a, b_ in zip((got.u, got.s, got.z), (want.u, want.s, want.z)):
        np.testing.assert_array_equal(a, b_)
    _, q2, s2, b2 = operands(1, 100, 40, seed=m + 1)
    w2 = pack_i8(q2, s2)
    np.testing.assert_array_equal(matmul_i8(got, w2, b2, kernel=kernel), matmul_i8(plain, w2, b2, kernel=kernel))
    if kernel != "ref":  # the kernels read their output's bits back as int32 rows
        with pytest.raises(ValueError, match="C-contiguous"):
            matmul_i8(x, w, b, out=np.empty((m, 200), np.float32)[:, ::2], kernel=kernel, quantized=True)


def test_without_amx_permission_the_vnni_kernel_runs(monkeypatch):
    """A process Linux refuses the tile registers (or a CPU without AMX) runs the VNNI tile, or the
    reference where there is no VNNI either; asking for AMX there is a clear error."""
    monkeypatch.setattr(kernels_i8, "amx_ready", lambda: False)
    assert kernels_i8.best_kernel() == ("vnni" if HAVE_VNNI else "ref")
    x, q_w, s_w, b = operands(5, 64, 8)
    w = pack_i8(q_w, s_w)
    with pytest.raises(ValueError, match="cannot run the 'amx'"):
        matmul_i8(x, w, b, kernel="amx")
    np.testing.assert_allclose(matmul_i8(x, w, b), exact(x, q_w, s_w, b), rtol=2e-6, atol=2e-6)
