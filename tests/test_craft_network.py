"""CRAFT and RefineNet forward passes against the reference torch modules, run in this process.

Reference: EasyOCR's own `craft.py` (`CRAFT`) and clovaai's `refinenet.py` (as shipped by
craft-text-detector), imported through tests/_reference.py. Every float32 map is held within ATOL
of the reference; fp32 torch itself differs from fp64 by ~1e-6 on these maps (craft.md section 1).
"""
import numpy as np
import pytest

from _reference import real_image, real_reference_craft, rendered_text_image, require_reference
from detector_np import layers
from test_craft_layers import CONV_CASES, random_conv
from detector_np.craft import craft_forward
from detector_np.preprocess import normalize_mean_variance, resize_aspect_ratio
from detector_np.refiner import refiner_forward
from detector_np.weights import CRAFT_CONVS, REFINER_CONVS, convert_state_dict, load_craft

ATOL = 1e-4          # max |ours - reference| on every float32 output (score maps, features, refiner)

torch = pytest.importorskip("torch")


def randomize_batchnorm(net, seed):
    """Give every BatchNorm non-trivial statistics, so that folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.2 * torch.randn(n, generator=g)
            m.running_mean.data = 0.2 * torch.randn(n, generator=g)
            m.running_var.data = 0.5 + torch.rand(n, generator=g)
    return net.eval()


def numpy_state(net):
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def torch_craft(ref, x):
    net = ref.net
    with torch.no_grad():
        y, feature = net(torch.from_numpy(x).permute(2, 0, 1)[None])
    return y[0].numpy(), feature[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def random_craft():
    ref = require_reference()
    torch.manual_seed(0)
    net = randomize_batchnorm(ref.CRAFT(), 1)
    return net, convert_state_dict(numpy_state(net), CRAFT_CONVS)


@pytest.fixture(scope="module")
def real_craft():
    return real_reference_craft(require_reference()), load_craft()


def run_both(net, params, x):
    with torch.no_grad():
        ry, rf = net(torch.from_numpy(x).permute(2, 0, 1)[None])
    y, f = craft_forward(params, x)
    return (y, f), (ry[0].numpy(), rf[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("shape", [(64, 96), (96, 32), (160, 128)])
def test_random_craft_matches_reference(random_craft, shape):
    net, params = random_craft
    x = np.random.default_rng(shape[0]).standard_normal((*shape, 3)).astype(np.float32)
    (y, f), (ry, rf) = run_both(net, params, x)
    assert y.shape == (shape[0] // 2, shape[1] // 2, 2) and f.shape == (shape[0] // 2, shape[1] // 2, 32)
    scale = max(1.0, np.abs(ry).max())   # random weights give large activations: compare relative to them
    assert np.abs(y - ry).max() <= ATOL * scale
    assert np.abs(f - rf).max() <= ATOL * max(1.0, np.abs(rf).max())


def test_inplace_relu_quirk_matters(random_craft):
    """With non-in-place ReLUs the reference gives clearly different maps: the quirk we reproduce is real."""
    import copy

    net, params = random_craft
    naive = copy.deepcopy(net)
    for m in naive.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    x = np.random.default_rng(7).standard_normal((64, 64, 3)).astype(np.float32)
    (y, _), (ry, _) = run_both(net, params, x)
    with torch.no_grad():
        ry_naive = naive(torch.from_numpy(x).permute(2, 0, 1)[None])[0][0].numpy()
    scale = max(1.0, np.abs(ry).max())
    assert np.abs(y - ry).max() <= ATOL * scale
    assert np.abs(y - ry_naive).max() > 100 * ATOL * scale


@pytest.mark.parametrize("source,canvas", [("idcard2.jpg", 512), ("rendered", 480)])
def test_real_weights_score_maps(real_craft, source, canvas):
    net, params = real_craft
    if source == "rendered":
        img = rendered_text_image(["Handwriting is hard to read,", "printed text is easier.", "0123 4567 89"],
                                  font_size=26, angle=3)
    else:
        img = real_image(source)
    x = normalize_mean_variance(resize_aspect_ratio(img, canvas, 1.5)[0])
    (y, f), (ry, rf) = run_both(net, params, x)
    assert np.abs(y - ry).max() <= ATOL
    assert np.abs(f - rf).max() <= ATOL * max(1.0, np.abs(rf).max())
    assert ry[..., 0].max() > 0.7                          # there is text: the comparison is not vacuous


@pytest.fixture(scope="module")
def random_refiner():
    ref = require_reference(refiner=True)
    torch.manual_seed(3)
    net = randomize_batchnorm(ref.RefineNet(), 4)
    return net, convert_state_dict(numpy_state(net), REFINER_CONVS)


@pytest.mark.parametrize("shape", [(40, 56), (16, 24), (64, 30)])
def test_random_refiner_matches_reference(random_refiner, shape):
    net, params = random_refiner
    rng = np.random.default_rng(shape[0])
    y = rng.random((*shape, 2), dtype=np.float32)
    feature = np.maximum(rng.standard_normal((*shape, 32), dtype=np.float32), 0)
    with torch.no_grad():
        ref = net(torch.from_numpy(y)[None], torch.from_numpy(feature).permute(2, 0, 1)[None])[0].numpy()
    ours = refiner_forward(params, y, feature)
    assert ours.shape == ref.shape == (*shape, 1)
    assert np.abs(ours - ref).max() <= ATOL * max(1.0, np.abs(ref).max())


# ---- building blocks: the fast kernels against their plain definitions and torch -------------------

@pytest.mark.parametrize("k,dilation,cin,cout,shape", CONV_CASES)
def test_conv2d_reference_matches_torch(k, dilation, cin, cout, shape):
    """The readable convolution against torch (the fast paths are held to it in test_craft_layers.py)."""
    x, w, b = random_conv(k, dilation, cin, cout, shape)
    plain = layers.conv2d_reference(x, w, b, dilation=dilation, relu=True)
    t = torch.nn.functional.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None], torch.from_numpy(w), torch.from_numpy(b),
                                   padding=dilation * (k // 2), dilation=dilation).relu()[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(plain, t, atol=ATOL)







def test_fold_batchnorm_matches_torch():
    torch.manual_seed(0)
    seq = randomize_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(5, 7, 3, padding=1), torch.nn.BatchNorm2d(7)), 2)
    x = torch.randn(1, 5, 12, 9)
    with torch.no_grad():
        ref = seq(x)[0].permute(1, 2, 0).numpy()
    sd = numpy_state(seq)
    w, b = layers.fold_batchnorm(sd["0.weight"], sd["0.bias"], sd["1.weight"], sd["1.bias"], sd["1.running_mean"],
                                 sd["1.running_var"])
    np.testing.assert_allclose(layers.conv2d(x[0].permute(1, 2, 0).numpy(), w, b), ref, atol=ATOL)


@pytest.mark.parametrize("src,dst", [((5, 7), (10, 14)), ((13, 4), (26, 8)), ((6, 6), (9, 20)), ((8, 8), (5, 3))])
def test_upsample_bilinear_matches_torch(src, dst):
    x = np.random.default_rng(1).standard_normal((*src, 6)).astype(np.float32)
    t = torch.nn.functional.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=dst, mode="bilinear",
                                        align_corners=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(layers.upsample_bilinear(x, dst), t, atol=1e-6)
    np.testing.assert_allclose(layers.upsample_bilinear_reference(x, dst), t, atol=1e-6)


def test_maxpools_match_torch():
    x = np.random.default_rng(2).standard_normal((11, 14, 5)).astype(np.float32)
    tx = torch.from_numpy(x).permute(2, 0, 1)[None]
    p2 = torch.nn.functional.max_pool2d(tx, 2, 2)[0].permute(1, 2, 0).numpy()
    p3 = torch.nn.functional.max_pool2d(tx, 3, 1, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(layers.maxpool2x2(x), p2)
    np.testing.assert_array_equal(layers.maxpool3x3_same(x), p3)






