"""trocr_np.kernels: each Numba kernel against its readable NumPy reference (no torch needed).

The torch comparisons of the same functions live in test_trocr_parity.py.
"""
import numpy as np
import pytest

from trocr_np import kernels


def _maxdiff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


TOL = 1e-4


LN_SHAPES = [(1, 7), (5, 384), (3, 17, 1024)]


def random_layer_norm_inputs(shape):
    """x (..., D) off-centre and wide, gain and bias (D,) float32."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    g, b = rng.standard_normal((2, shape[-1])).astype(np.float32)
    return x, g, b


def random_bias_act_inputs():
    """(2, 9, 300) pre-activations covering [-12, 12] and both tails, bias (300,)."""
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((2, 9, 300)) * 4).astype(np.float32)
    x[0, 0, :200] = np.linspace(-12, 12, 200)
    b = rng.standard_normal(300).astype(np.float32)
    return x, b


@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layer_norm_fast_equals_reference(shape):
    x, g, b = random_layer_norm_inputs(shape)
    for eps in (1e-12, 1e-5):
        assert _maxdiff(kernels.layer_norm(x, g, b, eps), kernels.layer_norm_ref(x, g, b, eps)) < TOL


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_bias_act_fast_equals_reference(act):
    x, b = random_bias_act_inputs()
    assert _maxdiff(kernels.bias_act_(x.copy(), b, act), kernels.ACT_REF[act](x + b)) < 1e-6


@pytest.mark.parametrize("m", [1, 2, 3, 8, 16, 17])
def test_matmul_wt_equals_blas(m):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((m, 256)).astype(np.float32)
    w = (rng.standard_normal((300, 256)) * 0.05).astype(np.float32)
    assert _maxdiff(kernels.matmul_wt(x, w), x.astype(np.float64) @ w.T.astype(np.float64)) < 1e-5


def test_exp32_accuracy():
    import numba

    @numba.njit
    def run(x, y):
        for i in range(x.size):
            y[i] = kernels.exp32(x[i])
    x = np.linspace(-87, 88, 400001).astype(np.float32)
    y = np.empty_like(x)
    run(x, y)
    want = np.exp(x.astype(np.float64))
    assert float((np.abs(y - want) / want).max()) < 2e-7
    run(np.array([-87.5, -1e4, -np.inf], np.float32), y[:3])
    assert np.all(y[:3] == 0)


def test_softmax_and_attend_one_equal_reference():
    rng = np.random.default_rng(13)
    s = (rng.standard_normal((2, 3, 5, 40)) * 5).astype(np.float32)
    assert _maxdiff(kernels.softmax_(s.copy()), kernels.softmax_ref(s)) < 1e-6
    assert _maxdiff(kernels.softmax_(s.copy(), 0.125), kernels.softmax_ref(s * np.float32(0.125))) < 1e-6
    s[..., 3:] = -np.inf  # masked scores get exactly zero probability
    got = kernels.softmax_(s.copy())
    assert np.all(got[..., 3:] == 0) and _maxdiff(got, kernels.softmax_ref(s)) < 1e-6
    q = rng.standard_normal((3, 4, 16)).astype(np.float32)
    k, v = rng.standard_normal((2, 3, 4, 20, 16)).astype(np.float32)
    for n in (1, 7, 20):
        o, p = kernels.attend_one(q, k, v, n)
        o_ref, p_ref = kernels.attend_one_ref(q, k, v, n)
        assert _maxdiff(o, o_ref) < 1e-5 and _maxdiff(p, p_ref) < 1e-6
