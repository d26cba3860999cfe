"""The int8 encoder's matrix products alone: ours (AMX, VNNI, the float32 reference route) against
float32 BLAS, ONNX Runtime's MLAS (quantize_dynamic's MatMulInteger) and torch's dynamic int8 Linear.

The shapes are one ViT-B/16 layer's at 384 px (a crop is 577 rows): q/k/v/output 768 -> 768,
fc1 768 -> 3072, fc2 3072 -> 768, for --images crops (M = 577 x images). Every side gets the same
float32 activations and does the whole job: quantise the activations, multiply, dequantise, add the
bias (ours: trocr_np.kernels_i8.matmul_i8; fc1 also as the encoder runs it, with the GELU and fc2's
quantised input made in the same pass). Variants alternate, --repeat passes, fastest reported, as
GMAC/s and as a ratio to ONNX Runtime's int8 in the same run. --threads: our workers, OpenBLAS,
torch and ORT intra-op threads alike.

    python benchmarks/bench_int8_gemm.py [--threads 1] [--images 4] [--repeat 5] [--no-onnx] [--no-torch]

Needs the test extras (torch) and the bench extra (onnxruntime, onnx) for the peers.

Measured 2026-12-03 (2-core Intel Xeon VM, family 6 model 167, AMX), 1 thread, GMAC/s for 768->768 /
768->3072 / 3072->768: ours with AMX 387 / 383 / 521 (VNNI 227 / 238 / 256; fc1 with GELU and fc2's
quantisation 246), ONNX Runtime int8 422 / 489 / 514, torch int8 188 / 215 / 234, OpenBLAS float32
70-78: MLAS is still 1.28x ours on the wide fc1 output.
Measured 2026-12-02 (2-core Intel Xeon VM, Emerald Rapids; see README's speed section for the run),
and the same day on a 2-core AMD EPYC VM (Zen 4, VNNI, no AMX), 1 thread, GMAC/s for 768->768 /
768->3072 / 3072->768: ours 173 / 182 / 201 (131 / 133 / 177 before the vectorised epilogue), fc1
with GELU and fc2's quantisation 153, ONNX Runtime int8 177 / 172 / 177, torch int8 167 / 164 / 174.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--images", type=int, default=4)
ap.add_argument("--repeat", type=int, default=5)
ap.add_argument("--no-onnx", dest="onnx", action="store_false")
ap.add_argument("--no-torch", dest="torch", action="store_false")
ARGS = ap.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)  # before NumPy
os.environ["TROCR_NP_THREADS"] = str(ARGS.threads)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from benchmarks.machine_info import machine  # noqa: E402
from trocr_np import kernels_i8  # noqa: E402
from trocr_np.quant import quantize_int8  # noqa: E402

SHAPES = [("q/k/v/out 768->768", 768, 768), ("fc1 768->3072", 768, 3072), ("fc2 3072->768", 3072, 768)]


def ort_sessions(w_kn: np.ndarray, b: np.ndarray):
    """float32 and quantize_dynamic'd int8 ONNX graphs of y = x @ w + b, one thread each."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
    K, N = w_kn.shape
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
                          "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, N])],
                          [numpy_helper.from_array(w_kn, "W"), numpy_helper.from_array(b, "b")])
    d = tempfile.mkdtemp()
    f32, i8 = os.path.join(d, "f32.onnx"), os.path.join(d, "i8.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), f32)
    quantize_dynamic(f32, i8, weight_type=QuantType.QInt8)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = ARGS.threads, 1
    return [ort.InferenceSession(p, so, providers=["CPUExecutionProvider"]) for p in (f32, i8)]


def variants(x, w_nk, b, name):
    q, s = quantize_int8(w_nk)
    P = kernels_i8.pack_i8(q, s)
    out = np.empty((x.shape[0], w_nk.shape[0]), np.float32)
    v = {}
    if kernels_i8.amx_ready():
        v["ours amx"] = lambda: kernels_i8.matmul_i8(x, P, b, out=out, kernel="amx")
    if kernels_i8.HAVE_VNNI:
        v["ours vnni"] = lambda: kernels_i8.matmul_i8(x, P, b, out=out, kernel="vnni")
    if name.startswith("fc1"):
        v["ours fc1+gelu+quant"] = lambda: kernels_i8.matmul_i8(x, P, b, out=out, act="gelu", quantized=True)
    v["ours ref (f32 BLAS)"] = lambda: kernels_i8.matmul_i8(x, P, b, out=out, kernel="ref")
    w_t = np.ascontiguousarray(w_nk.T)
    v["numpy f32"] = lambda: np.add(x @ w_t, b, out=out)
    if ARGS.torch:
        import torch
        torch.set_num_threads(ARGS.threads)
        lin = torch.nn.Linear(w_nk.shape[1], w_nk.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w_nk))
            lin.bias.copy_(torch.from_numpy(b))
        qlin = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        tx = torch.from_numpy(x)
        v["torch f32"] = lambda: torch.inference_mode()(lin)(tx)
        v["torch int8 (dynamic)"] = lambda: torch.inference_mode()(qlin)(tx)
    if ARGS.onnx:
        s32, s8 = ort_sessions(w_t, b)
        v["ORT f32"] = lambda: s32.run(None, {"x": x})
        v["ORT int8"] = lambda: s8.run(None, {"x": x})
    return v


def main():
    print(machine())
    print(f"threads {ARGS.threads}, M = 577 x {ARGS.images}, best kernel here: {kernels_i8.best_kernel()}")
    rng = np.random.default_rng(0)
    M = 577 * ARGS.images
    for name, K, N in SHAPES:
        x = rng.standard_normal((M, K)).astype(np.float32)
        w = (rng.standard_normal((N, K)) * 0.03).astype(np.float32)
        b = (rng.standard_normal(N) * 0.1).astype(np.float32)
        v = variants(x, w, b, name)
        for f in v.values():
            f()  # warm-up: compilation, packing, first-touch
        best = {k: float("inf") for k in v}
        for _ in range(ARGS.repeat):
            for k, f in v.items():
                t = time.perf_counter()
                f()
                best[k] = min(best[k], time.perf_counter() - t)
        ref = best.get("ORT int8")
        print(f"\n{name}, M = {M}: {M * K * N / 1e9:.2f} GMAC")
        for k, t in best.items():
            ratio = f"{t / ref:5.2f} x ORT int8" if ref else ""
            print(f"  {k:22s} {t * 1e3:8.1f} ms {M * K * N / t / 1e9:7.0f} GMAC/s  {ratio}")


if __name__ == "__main__":
    main()
