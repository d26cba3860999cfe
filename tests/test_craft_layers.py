"""detector_np.layers: the fast convolutions (Winograd, im2col + BLAS, banded on worker threads) against
their readable references, and shape errors (no torch needed; torch comparisons: test_craft_network.py)."""
import numpy as np
import pytest

from detector_np import layers
from detector_np.craft import craft_forward
from detector_np.refiner import refiner_forward
from ocr_base import threads

ATOL = 1e-4          # max |ours - reference| on every float32 output


# (kernel, dilation, C_in, C_out, (H, W)): every path (Winograd, dilated Winograd, im2col, 1x1), odd sizes
CONV_CASES = [
    (3, 1, 3, 8, (17, 23)), (3, 1, 16, 24, (40, 50)), (3, 6, 8, 16, (20, 30)), (3, 24, 8, 4, (30, 20)),
    (3, 60, 4, 4, (10, 10)), (1, 1, 24, 40, (9, 31)), (3, 2, 5, 7, (1, 1)), (3, 1, 2, 3, (1, 200)),
    (3, 1, 32, 16, (21, 13)), (3, 1, 64, 8, (1, 1)), (3, 6, 16, 8, (52, 80)), (3, 24, 16, 4, (50, 75)),
    (3, 5, 17, 3, (7, 12))]


def random_conv(k, dilation, cin, cout, shape):
    """x (H, W, C_in), w (C_out, C_in, k, k), b (C_out,) float32, seeded by the case."""
    rng = np.random.default_rng(k * 100 + dilation)
    x = rng.standard_normal((*shape, cin)).astype(np.float32)
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("k,dilation,cin,cout,shape", CONV_CASES)
def test_conv2d_fast_equals_reference(k, dilation, cin, cout, shape):
    x, w, b = random_conv(k, dilation, cin, cout, shape)
    plain = layers.conv2d_reference(x, w, b, dilation=dilation, relu=True)
    np.testing.assert_allclose(layers.conv2d(x, w, b, dilation=dilation, relu=True), plain, atol=ATOL)
    np.testing.assert_allclose(layers.conv2d_im2col(x, w, b, dilation=dilation, relu=True), plain, atol=ATOL)
    if k == 3 and dilation > 1:
        np.testing.assert_allclose(layers.conv2d_dilated_winograd(x, w, b, dilation, relu=True), plain, atol=ATOL)
    if k == 3 and dilation == 1:
        np.testing.assert_allclose(layers.conv2d_winograd(x, w, b, relu=True), plain, atol=ATOL)
        np.testing.assert_allclose(layers.conv2d_winograd(x, w, b, relu=False),
                                   layers.conv2d_reference(x, w, b), atol=ATOL)


@pytest.mark.parametrize("shape,cin,cout", [((33, 47), 16, 8), ((2, 3), 32, 5), ((100, 9), 64, 64), ((7, 400), 20, 3)])
def test_winograd_odd_sizes_and_serial_equals_threaded(shape, cin, cout, monkeypatch):
    """Odd heights/widths (partial tiles), many bands; the serial fallback gives the same result."""
    rng = np.random.default_rng(cin)
    x = rng.standard_normal((*shape, cin)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    monkeypatch.setattr(layers, "WINOGRAD_TILES", 7)
    threaded = layers.conv2d(x, w, b, relu=True)
    np.testing.assert_allclose(threaded, layers.conv2d_reference(x, w, b, relu=True), atol=ATOL)
    monkeypatch.setattr(threads, "THREADS", 1)
    np.testing.assert_allclose(layers.conv2d(x, w, b, relu=True), threaded, atol=1e-6)   # BLAS may split differently


def test_conv2d_banding_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((37, 29, 8)).astype(np.float32)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    whole = layers.conv2d(x, w, b, dilation=2)
    monkeypatch.setattr(layers, "BAND_BYTES", 1)            # one row per band
    # BLAS may sum in another order for another band height: equal up to rounding, not bitwise
    np.testing.assert_allclose(layers.conv2d(x, w, b, dilation=2), whole, atol=ATOL)
    np.testing.assert_allclose(whole, layers.conv2d_reference(x, w, b, dilation=2), atol=ATOL)


def test_bad_shapes_raise():
    params = {"w": None}
    with pytest.raises(ValueError, match="multiples of 32"):
        craft_forward(params, np.zeros((50, 64, 3), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        layers.conv2d(np.zeros((4, 4, 3), np.float32), np.zeros((2, 4, 3, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="refiner_forward"):
        refiner_forward({}, np.zeros((4, 4, 2), np.float32), np.zeros((4, 5, 32), np.float32))


@pytest.mark.parametrize("widths,cout,shape", [((5, 7), 4, (9, 13)), ((64, 128), 64, (40, 30)), ((3,), 2, (1, 1))])
def test_conv1x1_concat_equals_conv_of_concatenation(widths, cout, shape):
    rng = np.random.default_rng(sum(widths))
    xs = [rng.standard_normal((*shape, c)).astype(np.float32) for c in widths]
    w = rng.standard_normal((cout, sum(widths), 1, 1)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    expected = layers.conv2d_reference(np.concatenate(xs, axis=2), w, b, relu=True)
    np.testing.assert_allclose(layers.conv1x1_concat(xs, w, b, relu=True), expected, atol=ATOL)
    np.testing.assert_array_equal(layers.maxpool2x2(xs[0]), layers.maxpool2x2_reference(xs[0]))
    with pytest.raises(ValueError, match="conv1x1_concat"):
        layers.conv1x1_concat(xs, w[:, :-1], b)


def test_winograd_weight_transform_equals_einsum():
    w = np.random.default_rng(9).standard_normal((12, 7, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(layers.winograd_weights(w), layers.winograd_weights_reference(w), rtol=1e-6, atol=1e-6)
