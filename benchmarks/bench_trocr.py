"""TrOCR speed: trocr-np vs the torch reference, in one process, random weights, full depth.

For the base (ViT-B + 12 x 1024 decoder) and large (ViT-L + 12 x 1024) layouts it times:
  encoder   one 384 x 384 image through the encoder (median of --repeat runs)
  token     one cached decoder step (median over the steps of a 32-token decode; the one-off
            cross-attention K/V work is excluded on both sides)
  step x4   the same step for 4 rows at once (a batch of 4 images, or one image in a 4-beam
            search): the weights are read once for all rows
  greedy32  encoder + a whole greedy decode of exactly 32 new tokens (EOS suppressed)
and prints each time and the ratio trocr-np / torch. With --dtype bfloat16 int8 (...) it also
converts the same model to those dtypes (trocr_np.quant) and times, for each dtype against our
float32 in the same alternating runs:
  token / step x4   as above
  RSS               resident memory after loading the folder, encoding one image and decoding a few
                    tokens (a fresh subprocess each), against the weight file's size: total, with
                    the line's decode state alive; less the process's RSS before loading (Python,
                    NumPy, Numba: ~113-177 MB, whatever the model); and that once the line's state (the
                    cross-attention K/V, 57 MB at base size) is freed and glibc has handed freed
                    blocks back (malloc_trim). The second and third are the model's own footprint:
                    the 1.2x goal is about them (no float32 copies of packed weights), since the
                    fixed runtime alone is 0.19x an int8 base file.
  beam 4 / greedy   a 4-beam search of --tokens tokens against greedy, on the same line
With --onnx it instead times ONNX Runtime (benchmarks/onnx_peer.py: torch.onnx export, float32 and
quantize_dynamic int8) against our float32 and int8 (--quantize-encoder) and torch on the encoder / token / step x4 / greedy rows,
after checking the float32 export against transformers (logits within 1e-4, greedy ids equal).
The two sides run alternately (A B A B ...)
and each reports its *fastest* run: on a shared machine other processes only ever add time, so the
minimum is the least disturbed estimate (medians are printed too). Both run float32 at the same thread count:
OpenBLAS threads for us (OPENBLAS_NUM_THREADS, set before NumPy loads), torch.set_num_threads
for the reference. Numba kernels are serial; the encoder runs them on its own worker threads
(TROCR_NP_THREADS = --threads, each with single-threaded BLAS).

    python benchmarks/bench_trocr.py [--configs base large] [--threads N] [--repeat 3]
    python benchmarks/bench_trocr.py --configs base --dtype bfloat16 int8 [--no-torch]
    python benchmarks/bench_trocr.py --configs base --onnx        (needs the bench extra: onnxruntime, onnx)

It prints the CPU model and the OpenBLAS kernel in use (threadpoolctl, a benchmark-only extra).
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where a machine sets them, choose that kernel; users'
machines don't, so run it once as is and once with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`.

Times vary run to run (about +-15% on a shared VM): compare the ratios taken in one run, and check
`uptime` first. Needs torch + transformers (the test extras) and ~6 GB of free disk in $TMPDIR.

Measured 2026-12-03, a later session (same command and kind of VM), three runs after the one-row
prefetch spread over the dot loop and 512 KB chunks (the last two also with 2-64 rows as native chunks
and the beams sharing their cross K/V): float32 token 36.6-38.8 ms, 4-row step 64.1-68.7 ms; bfloat16
0.54-0.57 / 0.50-0.51, int8 0.35 / 0.40-0.42 of those; beam 4 / greedy float32 1.47-1.51, bfloat16
1.16-1.27, int8 1.20-1.46; RSS / file 1.19 / 1.30 / 1.43, less the ~177 MB at start 1.05 / 1.09 /
1.12, line freed 1.00 / 1.01-1.02 / 1.01-1.02.
The session before (--configs base --dtype bfloat16 int8 --no-torch --repeat 3 --tokens 16
--threads 2), 2-core Intel Xeon VM (family 6 model 167, AMX; OpenBLAS SkylakeX, both unset), nothing
else running, four runs, one-row jobs from kept chunk tables in the last three: float32 token
36.8-42.5 ms, 4-row step 65.5-75.2 ms; bfloat16 0.70-0.76 / 0.55-0.61, int8 0.44-0.47 / 0.49-0.53 of
those; beam 4 / greedy float32 1.47-1.53, bfloat16 1.26-1.29, int8 1.34-1.45; RSS / file 1.18 / 1.30
/ 1.42, less the ~177 MB at start 1.05 / 1.09 / 1.12, line freed 1.00 / 1.01 / 1.01. README's speed
section has why one bfloat16 row stays above 0.6x there.
Measured 2026-12-02 (--configs base --dtype bfloat16 int8 --no-torch --repeat 3 --tokens 16
--threads 2), 2-core AMD EPYC VM (Zen 4, no AMX), nothing else running: float32 token 38.5 ms, 4-row
step 63.7 ms; bfloat16 0.55 / 0.47, int8 0.37 / 0.41 of those; beam 4 / greedy 1.34 / 1.25 / 1.27;
RSS / file 1.18 / 1.30 / 1.42, less the ~177 MB at start 1.05 / 1.09 / 1.12, line freed 1.00 / 1.01
/ 1.01. The same day on a 2-core Intel Xeon VM (Emerald Rapids), nothing else running, after the
register-tiled multi-row kernels and the native one-row hand-offs (trocr_np/kernels_q.py, ocr_base/threads.py):
float32 token 56.9 ms, 4-row step 91.2 ms; bfloat16 0.73 / 0.58, int8 0.47 / 0.46 of those; beam 4 /
greedy float32 1.45, bfloat16 1.33, int8 1.34; RSS / file 1.19 / 1.31 / 1.43, less the ~177 MB at
start 1.05 / 1.09 / 1.13, line freed 1.01 / 1.02 / 1.02. Earlier runs, before those kernels:

Measured (--configs base --dtype bfloat16 int8 --no-torch --repeat 3 --tokens 16 [--threads 1]),
2026-12-02, on a 2-core Intel Xeon VM (family 6 model 207, Sapphire Rapids class: AVX-512 with
BF16/VNNI, AMX) shared with another session's jobs (one process at ~100% of a core throughout),
kernel line "openblas 0.3.31.188.0 kernel SkylakeX, openblas 0.3.30 kernel SkylakeX;
OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE unset" (this machine sets neither, so "as is" and `env -u ...`
are the same run). Ratios to our float32 in one run, and our own times; "before" is 040f957,
"after" adds prefetching in the packed matmul and attention kernels, the column-blocked packed
kernel for fc2, one thread hand-off fewer per call and q/k/v in one call (trocr_np/kernels_q.py,
kernels.py, decoder.py); each pair taken one run after the other, UTC times:

| ratio (goal), or ms             | 2 thr before 01:49 | after 01:53 | after 02:10 | before 02:14 | 1 thr before 01:59 | after 01:56 |
|---|---|---|---|---|---|---|
| load average during the run     | 2.3-4.7 | 4.7-4.0 | 3.3-4.0 | 4.0-3.0 | 1.9-2.0 | 3.9-1.9 |
| decoder / token, bf16 (<= 0.6)  | 1.28    | 0.96    | 0.51    | 0.48    | 0.80    | 0.68 |
| decoder / token, int8 (<= 0.5)  | 0.94    | 0.63    | 0.38    | 0.32    | 0.51    | 0.43 |
| 4-row step, bf16 (<= 0.6)       | 1.24    | 0.66    | 0.61    | 0.98    | 0.78    | 0.62 |
| 4-row step, int8 (<= 0.5)       | 0.96    | 0.50    | 0.55    | 0.51    | 0.57    | 0.52 |
| token ms, f32 / bf16 / int8     | 50 / 64 / 47 | 52 / 50 / 33 | 93 / 47 / 35 | 156 / 74 / 49 | 87 / 69 / 44 | 88 / 59 / 38 |
| 4-row ms, f32 / bf16 / int8     | 85 / 106 / 82 | 89 / 59 / 45 | 128 / 78 / 70 | 99 / 97 / 50 | 128 / 100 / 73 | 126 / 78 / 66 |

The float32 side is the least reliable here: when the other session's process holds a core,
OpenBLAS's 2-thread sgemv waits for its second thread and a float32 token took 93-156 ms in the
second pair (50-52 in the first), which flatters the 2-thread ratios of that pair; compare the
8/16-bit times themselves across a pair. Two earlier runs of "before" at 2 threads (01:10 and 01:13,
load 0.5-2.6) gave token bf16 1.12 / 1.31, int8 0.76 / 0.87; 4-row step bf16 0.82 / 0.97, int8 0.65 /
0.67. On this VM one core's demand misses stream only ~6-8 GB/s, so before the prefetching the 8/16-bit
kernels were no faster than our float32 (OpenBLAS's sgemv, ~15 GB/s a core). With one core mostly
taken the packed kernel's two halves often share a core (bf16 token 59 ms at 1 thread, 47-50 at 2),
and its 4-row loops are bound by 8-lane FMAs (trocr_np/kernels_q.py: LLVM prefers 256-bit vectors
on this CPU). The beam 4 / greedy rows moved by 2-3x between runs (float32 0.35 - 2.40) and are left out.

Measured (--configs base --dtype bfloat16 int8 --no-torch --repeat 3 --tokens 16), 2026-12-01, on a
2-core AMD EPYC VM (family 25 model 17, AVX-512 with BF16/VNNI) shared with ~7 other jobs, kernel
line "openblas 0.3.31 kernel SkylakeX; OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE unset". Ratios to our
float32 in one run; "before" is the four-rows-at-a-time packed kernel, "after" the row-by-row one
(trocr_np/kernels_q.py), in runs taken one after the other:

| ratio (goal)                        | 1 thread before | after | 2 threads before | after |
|---|---|---|---|---|
| load average during the run         | 13.7-20         | 11-15 | 6-8              | 4.3-5.6 |
| decoder / token, bf16 (<= 0.6)      | 0.69            | 0.34  | 0.70             | 0.38 |
| decoder / token, int8 (<= 0.5)      | 0.48            | 0.32  | 0.56             | 0.22 |
| 4-row step, bf16 (<= 0.6)           | 0.42            | 0.57  | 0.81             | 0.80 |
| 4-row step, int8 (<= 0.5)           | 0.33            | 0.45  | 0.63             | 0.64 |
| beam 4 / greedy, bf16 / int8 (<= 1.5) | 1.29 / 1.03   | 1.43 / 1.25 | 1.19 / 1.15 | 1.57 / 1.00 |
| RSS / file, bf16 / int8             | 1.30 / 1.41     | 1.29 / 1.41 | 1.30 / 1.43 | 1.30 / 1.43 |
| (RSS - start) / file, bf16 / int8   | 1.16 / 1.22     | 1.16 / 1.22 | 1.17 / 1.24 | 1.17 / 1.24 |
| the same, line freed, bf16 / int8   | 1.08 / 1.11     | 1.08 / 1.11 | 1.09 / 1.13 | 1.09 / 1.13 |

Both columns ran this same script. Absolute times moved up to 2x between runs (float32 token 62
vs 145 ms at 1 thread), so a column pair is only a rough before/after. Cleaner, both kernels
alternating in one process, 1 thread: the decode matrices of one token (908 MB as float32; load 13)
1 row bf16 0.78 -> 0.42, int8 0.52 -> 0.40, 4 rows bf16 0.80 -> 0.44, int8 0.55 -> 0.28; whole decode
steps of the converted base model (load 7-9) 1 row bf16 0.62 -> 0.46, int8 0.84 -> 0.30, 4 rows bf16
1.72 -> 0.63, int8 0.58 -> 0.40 (the old int8 1-row and bf16 4-row figures were disturbed).
At 2 threads on a loaded machine OpenBLAS's 2-thread sgemv (our float32 path for one row) can
take 0.5 s a token, which flatters the per-token ratios. The 2-thread 4-row step misses its goals
(0.80 / 0.64, the same before and after): with the load above 2 the second worker has no core of its
own, and the packed weight set of one step took the same time split over 2 workers as on one (bf16,
load 3.7: 1 row 27.9 vs 23.4 ms, 4 rows 49 vs 45 ms), while our float32 4-row path
(kernels.matmul_wt, still four weight rows at a time) is memory-bound and gains from any bandwidth.
Beam 4 / greedy includes the encoder (float32 BLAS), whose time under this load moves by seconds.
"""
from __future__ import annotations

import argparse
import os
import sys


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["base", "large"], choices=["base", "large"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float16", "bfloat16", "int8"],
                    help="also time these converted copies against our float32")
    ap.add_argument("--no-torch", dest="torch", action="store_false", help="skip the torch comparisons")
    ap.add_argument("--onnx", action="store_true",
                    help="ONNX Runtime float32 + int8 (benchmarks/onnx_peer.py) against our float32 + int8 and torch, "
                         "instead of the trocr-np vs torch rows")
    ap.add_argument("--onnx-dir", default=None,
                    help="keep the exported .onnx graphs here and reuse them on the next run (one --configs name "
                         "each; the models are seeded, and the float32 check catches a stale export)")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)  # internal: one RSS measurement
    return ap.parse_args()


ARGS = parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)  # must precede the NumPy import
os.environ["TROCR_NP_THREADS"] = str(ARGS.threads)  # our encoder's worker threads (ocr_base.threads)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
# this checkout's trocr_np, not whichever one is installed (`python benchmarks/...` puts benchmarks/ first)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ARGS.rss_child is None:  # the RSS child measures our memory alone
    import torch
    from transformers import TrOCRConfig, ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

from trocr_np.decoder import decoder_forward, init_cache  # noqa: E402
from trocr_np.encoder import encoder_forward  # noqa: E402
from trocr_np.model import load_model  # noqa: E402

LAYOUTS = {  # trocr.md section 1
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}


def build(name, out_dir):
    """Random HF model at the real layout, saved and loaded back as ours (memory-mapped)."""
    enc = ViTConfig(image_size=384, patch_size=16, qkv_bias=False, **LAYOUTS[name])
    dec = TrOCRConfig(vocab_size=50265, d_model=1024, decoder_layers=12, decoder_attention_heads=16,
                      decoder_ffn_dim=4096, activation_function="gelu", cross_attention_hidden_size=enc.hidden_size)
    torch.manual_seed(0)
    hf = VisionEncoderDecoderModel(VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)).eval()
    gc = hf.generation_config
    gc.decoder_start_token_id, gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = 2, 0, 2, 1
    hf.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        f.write('{"image_processor_type": "ViTImageProcessor", "size": 384, "resample": 2}')
    return hf, load_model(out_dir, tokenizer=False)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ab_times(ours, theirs, repeat):
    """Alternate the two callables `repeat` times after one warm-up each (Numba load, page-in of
    the memory-mapped weights); returns (our times, their times)."""
    ours(), theirs()
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(ours))
        b.append(timed(theirs))
    return a, b


def next_token(logits, eos):
    logits = logits.copy()
    logits[:, eos] = -np.inf  # suppress EOS so every decode runs the full length
    return logits.argmax(-1)


def ours_steps(model, enc, n):
    """Per-step times of an n-token cached greedy decode (ours)."""
    cfg, params = model.config, model.params
    cache = init_cache(params, cfg, enc, n + 1)
    tok = np.full((enc.shape[0], 1), cfg.decoder_start_token_id)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        logits = decoder_forward(params, cfg, tok, cache)[:, -1]
        tok = next_token(logits, cfg.eos_token_id)[:, None]
        ts.append(time.perf_counter() - t0)
    return ts


def torch_steps(hf, enc_t, n):
    """Per-step times of an n-token cached greedy decode through HF's TrOCRForCausalLM."""
    tok = torch.full((enc_t.shape[0], 1), 2)
    cache, ts = None, []
    for _ in range(n):
        t0 = time.perf_counter()
        out = hf.decoder(input_ids=tok, encoder_hidden_states=enc_t, cache=cache, use_cache=True)
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        tok = torch.from_numpy(next_token(out.logits[:, -1].numpy(), 2)[:, None])
        ts.append(time.perf_counter() - t0)
    return ts


def ours_greedy(model, px, n):
    try:
        from trocr_np.generate import GenerationOptions, generate
    except ImportError:
        generate = None
    if generate is not None:
        return generate(model, px, GenerationOptions(max_new_tokens=n, min_new_tokens=n)).sequences
    enc = encoder_forward(model.params, model.config, px)
    return ours_steps(model, enc, n)


from machine_info import machine  # noqa: E402  (the header line)


def rss_child(model_dir):
    """In a fresh process: load, encode one image and decode a few tokens (every weight is read);
    print the resident set in bytes while that line's decode state (KV cache) is alive, after it
    is freed, and before loading."""
    import ctypes

    def vm_rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
    before = vm_rss()  # Python, NumPy, Numba imported; no model yet
    model = load_model(model_dir, tokenizer=False)
    enc = encoder_forward(model.params, model.config, np.zeros((1, 3, 384, 384), np.float32))
    cfg = model.config
    cache = init_cache(model.params, cfg, enc, 4)
    tok = np.full((1, 1), cfg.decoder_start_token_id)
    for _ in range(3):
        tok = next_token(decoder_forward(model.params, cfg, tok, cache)[:, -1], cfg.eos_token_id)[:, None]
    during = vm_rss()
    del cache, enc
    try:  # glibc keeps freed blocks (the worker threads' arenas); hand them back, so RSS is what is live
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    print(during, vm_rss(), before)


def rss(model_dir):
    import subprocess
    out = subprocess.run([sys.executable, __file__, "--rss-child", model_dir, "--threads", str(ARGS.threads)],
                         capture_output=True, text=True, check=True).stdout
    return tuple(map(int, out.split()[-3:]))  # during, after, before


def dtype_rows(name, tmp, model, px, n):
    """Our float32 against the --dtype copies of the same model: per-token, 4-row step, RSS, beam 4."""
    from trocr_np.convert import convert_trocr
    from trocr_np.generate import GenerationOptions, generate

    models = {"float32": model}
    for dt in ARGS.dtype:
        if dt != "float32":
            models[dt] = load_model(convert_trocr(tmp, os.path.join(tmp, dt), dtype=dt), tokenizer=False)
    enc = encoder_forward(model.params, model.config, px)
    rows = []
    for what, e in (("decoder / token", enc), ("decoder / step, 4 rows", np.repeat(enc, 4, axis=0))):
        times = {dt: [] for dt in models}
        for dt, m in models.items():
            ours_steps(m, e, 4)  # warm-up: Numba load, page-in
        for _ in range(ARGS.repeat):
            for dt, m in models.items():
                times[dt].extend(ours_steps(m, e, n)[1:])
        for dt, ts in times.items():
            rows.append((name, f"{what} {dt}", min(ts), min(times["float32"])))
    opts = {"greedy": GenerationOptions(max_new_tokens=n, min_new_tokens=n),
            "beam 4": GenerationOptions(num_beams=4, max_new_tokens=n, min_new_tokens=n)}
    for dt, m in models.items():
        t = {k: min(ab_times(lambda: generate(m, px, o), lambda: None, max(1, ARGS.repeat - 1))[0])
             for k, o in opts.items()}
        rows.append((name, f"beam 4 vs greedy {dt}", t["beam 4"], t["greedy"]))
        size = os.path.getsize(os.path.join(tmp if dt == "float32" else os.path.join(tmp, dt), "model.safetensors"))
        during, after, before = rss(tmp if dt == "float32" else os.path.join(tmp, dt))
        rows.append((name, f"RSS vs file {dt}", during, size))
        rows.append((name, f"RSS - start RSS vs file {dt}", during - before, size))
        rows.append((name, f"RSS - start, line freed {dt}", after - before, size))
    for _, what, t, r in rows:
        unit = (1e6, "MB") if what.startswith("RSS") else (1e-3, "ms")
        print(f"[{name}] {what:34s} {t / unit[0]:9.1f} {unit[1]} vs {r / unit[0]:9.1f} {unit[1]}   "
              f"ratio {t / r:5.2f}", flush=True)
    return rows


def alternate(fns, repeat, per_step):
    """{label: fn} -> {label: [seconds]}: one warm-up each, then `repeat` rounds, one call of each per round.
    per_step: each fn returns its own per-step times (collected); else the call itself is timed."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            times[k].extend(out if per_step else [dt])
    return times


def onnx_rows(name, tmp, hf, model, px, n):
    """ONNX Runtime float32 and int8 (onnx_peer: torch.onnx export, quantize_dynamic) against our float32 and
    int8 (`trocr-np convert --dtype int8 --quantize-encoder` of the same folder: like quantize_dynamic, int8
    arithmetic in the encoder) and torch: encoder, token, 4-row step, greedy.
    First checks the float32 peer against transformers (logits within 1e-4, greedy ids equal)."""
    import onnx_peer
    from trocr_np.convert import convert_trocr

    d8 = os.path.join(tmp, "int8-encoder")
    model8 = load_model(d8 if os.path.isdir(d8) else convert_trocr(tmp, d8, dtype="int8", quantize_encoder=True),
                        tokenizer=False)
    t0 = time.perf_counter()
    out = os.path.join(ARGS.onnx_dir or tmp, f"onnx_{name}")
    ort32 = onnx_peer.export_trocr(hf, out, int8=False, threads=ARGS.threads)
    ort8 = onnx_peer.export_trocr(hf, out, int8=True, threads=ARGS.threads)
    print(f"[{name}] ONNX export + int8 quantisation {time.perf_counter() - t0:.1f} s (opset {onnx_peer.OPSET}, "
          f"onnxruntime {onnx_peer.ort.__version__})", flush=True)
    with torch.inference_mode():
        c32, c8 = (onnx_peer.check(hf, p, px, n) for p in (ort32, ort8))
        ref = hf.generate(torch.from_numpy(px), max_new_tokens=n, min_new_tokens=n, num_beams=1,
                          do_sample=False).numpy()
    ours8 = np.stack(ours_greedy(model8, px, n))  # one sequence per image, all n + 1 long (EOS suppressed)
    for label, c in (("ORT float32", c32), ("ORT int8", c8)):
        print(f"[{name}] {label} vs transformers: " + ", ".join(f"{k} {v:.3g}" for k, v in c.items()), flush=True)
    print(f"[{name}] our int8 vs transformers greedy: equal {float((ours8 == ref).mean()):.3g}, first differing "
          f"token {onnx_peer.first_diff(ours8, ref)}", flush=True)
    assert max(c32["encoder"], c32["prefill logits"], c32["cached logits"]) <= 1e-4, c32
    assert c32["greedy equal"] == 1.0, c32

    enc = encoder_forward(model.params, model.config, px)
    px_t = torch.from_numpy(px)

    def steps(e):  # per-step times of an n-token decode for the rows of e, the prefill step dropped
        return {"ours f32": lambda: ours_steps(model, e, n)[1:], "ours int8": lambda: ours_steps(model8, e, n)[1:],
                "ORT f32": lambda: ort32.step_time(e, n)[1:], "ORT int8": lambda: ort8.step_time(e, n)[1:],
                "torch": lambda: torch_steps(hf, torch.from_numpy(e), n)[1:]}
    cases = {
        # both int8 sides quantise the encoder's Linear inputs per call (ours per row, ORT per tensor)
        "encoder / image": {"ours f32": lambda: encoder_forward(model.params, model.config, px),
                            "ours int8": lambda: encoder_forward(model8.params, model8.config, px),
                            "ORT f32": lambda: ort32.encode(px), "ORT int8": lambda: ort8.encode(px),
                            "torch": lambda: hf.encoder(px_t)},
        "decoder / token": steps(enc),
        "decoder / step, 4 rows": steps(np.repeat(enc, 4, axis=0)),
        f"greedy {n} tok (enc+dec)": {
            "ours f32": lambda: ours_greedy(model, px, n), "ours int8": lambda: ours_greedy(model8, px, n),
            "ORT f32": lambda: ort32.greedy(px, n), "ORT int8": lambda: ort8.greedy(px, n),
            "torch": lambda: hf.generate(px_t, max_new_tokens=n, min_new_tokens=n, num_beams=1, do_sample=False)},
    }
    rows = []
    for what, fns in cases.items():
        if not ARGS.torch:
            fns.pop("torch")
        with torch.inference_mode():
            times = alternate(fns, ARGS.repeat if "greedy" not in what else max(1, ARGS.repeat - 1),
                              per_step=what.startswith("decoder"))
        best = {k: min(v) for k, v in times.items()}
        print(f"[{name}] {what:24s} " + "  ".join(f"{k} {t * 1e3:8.1f}" for k, t in best.items()) +
              f" ms   ours/ORT f32 {best['ours f32'] / best['ORT f32']:4.2f}  "
              f"int8 {best['ours int8'] / best['ORT int8']:4.2f}   load {os.getloadavg()[0]:.2f}", flush=True)
        rows += [(name, f"{what} ours/ORT {dt}", best[f"ours {dt}"], best[f"ORT {dt}"]) for dt in ("f32", "int8")]
        if ARGS.torch:
            rows.append((name, f"{what} ORT f32/torch", best["ORT f32"], best["torch"]))
    return rows


def main():
    if ARGS.rss_child:
        return rss_child(ARGS.rss_child)
    print(f"machine: {machine()}")
    torch.set_num_threads(ARGS.threads)
    n = ARGS.tokens
    print(f"threads: OpenBLAS {ARGS.threads}, torch {torch.get_num_threads()}; numpy {np.__version__}, "
          f"torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}")
    print("times: fastest of the alternating runs (see the module docstring)")
    rows = []
    for name in ARGS.configs:
        tmp = tempfile.mkdtemp(prefix=f"bench_trocr_{name}_")
        try:
            t0 = time.perf_counter()
            hf, model = build(name, tmp)
            print(f"[{name}] built and saved in {time.perf_counter() - t0:.1f} s", flush=True)
            px = np.random.default_rng(0).uniform(-1, 1, (1, 3, 384, 384)).astype(np.float32)
            px_t = torch.from_numpy(px)
            if len(ARGS.dtype) > 1 or ARGS.dtype != ["float32"]:
                rows += dtype_rows(name, tmp, model, px, n)
            if ARGS.onnx:
                rows += onnx_rows(name, tmp, hf, model, px, n)
                continue
            if not ARGS.torch:
                continue
            with torch.inference_mode():
                enc_times = ab_times(lambda: encoder_forward(model.params, model.config, px),
                                     lambda: hf.encoder(px_t), ARGS.repeat)
                enc = encoder_forward(model.params, model.config, px)
                enc_t = hf.encoder(px_t).last_hidden_state
                print(f"[{name}] encoder max|diff| {np.abs(enc - enc_t.numpy()).max():.2e}", flush=True)

                def step_times(e, e_t):
                    ours_steps(model, e, 4), torch_steps(hf, e_t, 4)  # warm-up
                    times = [], []
                    for _ in range(ARGS.repeat):  # per-step times, the first (prefill) step dropped
                        times[0].extend(ours_steps(model, e, n)[1:])
                        times[1].extend(torch_steps(hf, e_t, n)[1:])
                    return times

                tok_times = step_times(enc, enc_t)
                rows4_times = step_times(np.repeat(enc, 4, axis=0), enc_t.repeat(4, 1, 1))

                gen_times = ab_times(lambda: ours_greedy(model, px, n),
                                     lambda: hf.generate(px_t, max_new_tokens=n, min_new_tokens=n, num_beams=1,
                                                         do_sample=False, use_cache=True),
                                     max(1, ARGS.repeat - 1))
            for what, (ts, rs) in (("encoder / image", enc_times), ("decoder / token", tok_times),
                                   ("decoder / step, 4 rows", rows4_times),
                                   (f"greedy {n} tok (enc+dec)", gen_times)):
                t, r = min(ts), min(rs)
                rows.append((name, what, t, r))
                print(f"[{name}] {what:24s} trocr-np {t * 1e3:9.1f} ms   torch {r * 1e3:9.1f} ms   "
                      f"ratio {t / r:5.2f}   (medians {statistics.median(ts) * 1e3:.1f} / "
                      f"{statistics.median(rs) * 1e3:.1f} ms)", flush=True)
            del hf, model
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nsummary (ratio = trocr-np / torch, or dtype / our float32, beam 4 / greedy, RSS / file size; "
          f"goals: bf16 <= 0.6, int8 <= 0.5, beam 4 <= 1.5, RSS <= 1.2; seconds, or bytes for RSS); "
          f"load average now {os.getloadavg()[0]:.2f}")
    for name, what, t, r in rows:
        print(f"  {name:5s} {what:34s} {t:12.4g} {r:12.4g}  {t / r:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
