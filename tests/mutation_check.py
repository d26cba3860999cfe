"""Mutation check: can the TrOCR tests see every parameter and every quirk?

    python tests/mutation_check.py            # all mutants, 2 at a time
    python tests/mutation_check.py -j 1 -k eps

Each mutant is a one-line change to a copy of the source (a bias dropped, a LayerNorm gain or bias
ignored, an eps changed, scale_embedding ignored, the position offset 2 -> 0, the sinusoidal table
interleaved, the DeiT distillation token replaced, an image-processor field ignored, ...). The fast
TrOCR parity subset (`SUBSET`) runs against each copy; a mutant is *killed* when a test fails. The
script prints a Markdown table and exits 1 if any mutant survives (or the unmutated copy fails).
torch and transformers are imported once and each run is a forked child (POSIX), so a mutant costs
its tests, not the imports.

Left out on purpose, because they are *equivalent* mutants (no test can kill them): dropping the
key-projection bias of any attention. q.(k + b) = q.k + q.b adds the same number to every score of
a query, and softmax is invariant to that, so the output is identical up to rounding.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY = ("trocr_np", "ocr_base", "detector_np", "tests", "pyproject.toml")

# The fast subset of the TrOCR tests that sees the network and the image processing, in the order run
# (pytest -x stops at the first failure): whole-model logits first (they run the encoder too).
_PARITY = "tests/test_trocr_parity.py::"
_FAST_PRESETS = ("tiny", "sinusoidal", "mismatch", "nonsquare")  # (DeiT: mismatch; scale_embedding: sinusoidal)
SUBSET = ([f"{_PARITY}test_decoder_logits_match_hf[{p}]" for p in _FAST_PRESETS]
          + [f"{_PARITY}test_encoder_matches_hf[{p}]" for p in _FAST_PRESETS]
          + [f"{_PARITY}test_sinusoidal_table_matches_hf",
             "tests/test_trocr_fast_paths.py::test_encoder_layer_fast_equals_reference",
             "tests/test_checkpoint_layouts.py::test_processor_config_precedence",
             f"{_PARITY}test_preprocess_options"])

D, E, P, C = "trocr_np/decoder.py", "trocr_np/encoder.py", "trocr_np/preprocess.py", "trocr_np/config.py"


def _ones(key):   # a LayerNorm gain ignored
    return (f'params[p + "{key}.weight"]', f'np.ones_like(params[p + "{key}.weight"])')


def _zeros(key):  # a LayerNorm bias ignored
    return (f'params[p + "{key}.bias"]', f'np.zeros_like(params[p + "{key}.bias"])')


# name: (file, old text, new text, which occurrence of old (1-based))
MUTANTS = {
    # ---- decoder
    "dec self q bias dropped": (D, 'params[a + "q_proj.bias"]) * scale  # HF scales q', ') * scale', 1),
    "dec self v bias dropped": (D, 'params[a + "v_proj.weight"], params[a + "v_proj.bias"])',
                                'params[a + "v_proj.weight"])', 1),
    "dec self out bias dropped": (D, 'params[a + "out_proj.weight"], params[a + "out_proj.bias"])',
                                  'params[a + "out_proj.weight"])', 1),
    "dec cross q bias dropped": (D, 'params[a + "q_proj.weight"], params[a + "q_proj.bias"]) * scale',
                                 'params[a + "q_proj.weight"]) * scale', 2),
    "dec cross v bias dropped": (D, 'params[a + name + ".bias"])', 'params[a + name + ".bias"] '
                                 'if name == "k_proj" else None)', 1),
    "dec cross out bias dropped": (D, 'params[a + "out_proj.weight"], params[a + "out_proj.bias"])',
                                   'params[a + "out_proj.weight"])', 2),
    "dec fc1 bias dropped": (D, 'params[p + "fc1.bias"]', 'np.zeros_like(params[p + "fc1.bias"])', 1),
    "dec fc2 bias dropped": (D, 'params[p + "fc2.weight"], params[p + "fc2.bias"])', 'params[p + "fc2.weight"])', 1),
    "dec self_attn_layer_norm gain ignored": (D, *_ones("self_attn_layer_norm"), 1),
    "dec self_attn_layer_norm bias ignored": (D, *_zeros("self_attn_layer_norm"), 1),
    "dec encoder_attn_layer_norm gain ignored": (D, *_ones("encoder_attn_layer_norm"), 1),
    "dec encoder_attn_layer_norm bias ignored": (D, *_zeros("encoder_attn_layer_norm"), 1),
    "dec final_layer_norm gain ignored": (D, *_ones("final_layer_norm"), 1),
    "dec final_layer_norm bias ignored": (D, *_zeros("final_layer_norm"), 1),
    "dec layernorm_embedding gain ignored": (D, 'params[_P + "layernorm_embedding.weight"]',
                                             'np.ones_like(params[_P + "layernorm_embedding.weight"])', 1),
    "dec layernorm_embedding bias ignored": (D, 'params[_P + "layernorm_embedding.bias"]',
                                             'np.zeros_like(params[_P + "layernorm_embedding.bias"])', 1),
    "dec LayerNorm eps 1e-5 -> 1e-12": (D, "DEC_LN_EPS = 1e-5", "DEC_LN_EPS = 1e-12", 1),
    "dec scale_embedding ignored": (D, "if d.scale_embedding:", "if False:", 1),
    "dec learned position offset 2 -> 0": (D, "table[start + 2:start + T + 2]", "table[start:start + T]", 1),
    "dec sinusoidal interleaved": (D, "t = np.concatenate([np.sin(ang), np.cos(ang)], axis=1)",
                                   "t = np.stack([np.sin(ang), np.cos(ang)], axis=2).reshape(n, -1)", 1),
    "dec sinusoidal padding row kept": (D, "t[padding_idx] = 0", "pass", 1),
    "enc_to_dec_proj bias dropped": (D, 'params["enc_to_dec_proj.weight"], params["enc_to_dec_proj.bias"])',
                                     'params["enc_to_dec_proj.weight"])', 1),
    # ---- encoder (encoder_layer_fast is what runs; encoder_layer is its reference)
    "enc patch bias dropped": (E, 'params[p + "patch_embeddings.projection.bias"])', "None)", 1),
    "enc position embeddings dropped": (E, 'x += params[p + "position_embeddings"]', "x += 0", 1),
    "enc cls token zeroed": (E, 'prefix = [params[p + "cls_token"]]',
                             'prefix = [np.zeros_like(params[p + "cls_token"])]', 1),
    "enc DeiT distillation token dropped (cls twice)": (E, 'prefix.append(params[p + "distillation_token"])',
                                                       'prefix.append(params[p + "cls_token"])', 1),
    "enc query bias dropped": (E, 'params[a + name + ".bias"] if e.qkv_bias else None',
                               'params[a + name + ".bias"] if e.qkv_bias and name != "query" else None', 1),
    "enc value bias dropped": (E, 'params[a + name + ".bias"] if e.qkv_bias else None',
                               'params[a + name + ".bias"] if e.qkv_bias and name != "value" else None', 1),
    "enc attention output bias dropped": (E, 'params[p + "attention.output.dense.weight"], '
                                          'params[p + "attention.output.dense.bias"])',
                                          'params[p + "attention.output.dense.weight"])', 2),
    "enc intermediate bias dropped": (E, 'params[p + "intermediate.dense.bias"]',
                                      'np.zeros_like(params[p + "intermediate.dense.bias"])', 2),
    "enc output bias dropped": (E, 'y += params[p + "output.dense.bias"]', "y += 0", 1),
    "enc layernorm_before gain ignored": (E, *_ones("layernorm_before"), 2),
    "enc layernorm_before bias ignored": (E, *_zeros("layernorm_before"), 2),
    "enc layernorm_after gain ignored": (E, *_ones("layernorm_after"), 2),
    "enc layernorm_after bias ignored": (E, *_zeros("layernorm_after"), 2),
    "enc final layernorm gain ignored": (E, 'params["encoder.layernorm.weight"]',
                                         'np.ones_like(params["encoder.layernorm.weight"])', 1),
    "enc final layernorm bias ignored": (E, 'params["encoder.layernorm.bias"]',
                                         'np.zeros_like(params["encoder.layernorm.bias"])', 1),
    "enc layer_norm_eps from config ignored": (C, 'layer_norm_eps=_get(d, "layer_norm_eps", where, 1e-12, float)',
                                               "layer_norm_eps=1e-12", 1),
    "enc reference qkv bias dropped": (E, 'b = params[a + name + ".bias"] if qkv_bias else None', "b = None", 1),
    "enc reference layernorm_after bias ignored": (E, *_zeros("layernorm_after"), 1),
    # ---- image processing
    "pre resample ignored (bilinear)": (P, "resample=p.resample", "resample=2", 1),
    "pre rescale_factor ignored": (P, "* p.rescale_factor", "* (1 / 255)", 1),
    "pre image_mean ignored": (P, "np.asarray(p.image_mean, np.float32)", "np.full(3, 0.5, np.float32)", 1),
    "pre image_std ignored": (P, "np.asarray(p.image_std, np.float32)", "np.full(3, 0.5, np.float32)", 1),
    "pre do_normalize ignored": (P, "if p.do_normalize:", "if True:", 1),
    "pre do_center_crop ignored": (P, "if p.do_center_crop:", "if False:", 1),
    "cfg processor_config.json ignored": (C, 'nested = _read_json(proc_path).get("image_processor")',
                                          "nested = None", 1),
}


def apply(text: str, old: str, new: str, occurrence: int, where: str) -> str:
    starts = [m.start() for m in re.finditer(re.escape(old), text)]
    if len(starts) < occurrence:
        raise SystemExit(f"{where}: mutant text {old!r} found {len(starts)} times, need occurrence {occurrence}")
    i = starts[occurrence - 1]
    return text[:i] + new + text[i + len(old):]


def make_copy() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="trocr-mutants-"))
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
        else:
            shutil.copy2(src, tmp / name)
    return tmp


def _prewarm() -> None:
    """Import the heavy third-party modules once, in the parent: each mutant's pytest runs in a forked
    child that inherits them (not our own packages: those come fresh from the mutated copy)."""
    import numba  # noqa: F401
    import pytest  # noqa: F401
    import torch  # noqa: F401
    import transformers
    for name in ("VisionEncoderDecoderModel", "VisionEncoderDecoderConfig", "ViTConfig", "DeiTConfig", "TrOCRConfig",
                 "TrOCRProcessor", "AutoImageProcessor", "AutoTokenizer", "RobertaTokenizer"):
        getattr(transformers, name)
    from transformers.models.deit import image_processing_pil_deit  # noqa: F401
    from transformers.models.vit import image_processing_pil_vit  # noqa: F401


def _child(copy: Path, log: Path) -> None:
    """In the forked child: run the subset on `copy`, exit with pytest's status."""
    rc = 3
    try:
        signal.alarm(1800)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(copy)
        sys.path[:] = [str(copy)] + [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "tests")]
        os.environ.update(TROCR_NP_CACHE=str(copy / ".cache"), PYTHONDONTWRITEBYTECODE="1")
        import pytest
        rc = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-W", "ignore", *SUBSET]))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _outcome(log: Path) -> str:
    out = log.read_text(errors="replace")
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
    lines = out.strip().splitlines()
    return failed[0] if failed else lines[-1] if lines else ""


def run_all(copies: list[Path], jobs: list[tuple[str | None, tuple | None]], report) -> list:
    """Run (name, mutant) jobs on the copies, len(copies) at a time (fork per job); mutant None = unmutated."""
    free, running, results = list(copies), {}, []
    queue = list(jobs)
    while queue or running:
        while queue and free:
            copy = free.pop()
            name, mutant = queue.pop(0)
            restore = None
            if mutant is not None:
                path, old, new, occ = mutant
                target = copy / path
                restore = (target, target.read_text())
                target.write_text(apply(restore[1], old, new, occ, f"{path} ({name})"))
            log = copy / ".mutant.log"
            pid = os.fork()
            if pid == 0:
                _child(copy, log)
            running[pid] = (copy, name, time.time(), restore, log)
        pid, status = os.wait()
        copy, name, t0, restore, log = running.pop(pid)
        if restore is not None:
            restore[0].write_text(restore[1])
        rc = os.waitstatus_to_exitcode(status)
        results.append((name, rc, _outcome(log), time.time() - t0))
        report(results[-1])
        free.append(copy)
    return results


def _status(rc: int) -> str:
    return "killed" if rc in (1, 2) else "SURVIVED" if rc == 0 else f"error rc={rc}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-j", "--jobs", type=int, default=2, help="mutants run at once (one source copy each)")
    ap.add_argument("-k", default="", help="only mutants whose name contains this")
    args = ap.parse_args(argv)
    names = [n for n in MUTANTS if args.k in n]
    for n in names:  # every mutant must apply before anything runs
        path, old, new, occ = MUTANTS[n]
        apply((ROOT / path).read_text(), old, new, occ, f"{path} ({n})")
    _prewarm()
    copies = [make_copy() for _ in range(max(1, min(args.jobs, len(names))))]
    try:
        [(_, rc, first, secs)] = run_all(copies[:1], [(None, None)], lambda r: None)
        print(f"unmutated: rc={rc} ({secs:.0f} s) {first}", flush=True)
        if rc != 0:
            print("the unmutated copy fails the subset: fix that first")
            return 1
        results = run_all(copies, [(n, MUTANTS[n]) for n in names],
                          lambda r: print(f"  {r[0]}: {_status(r[1])} ({r[3]:.0f} s)", flush=True))
    finally:
        for c in copies:
            shutil.rmtree(c, ignore_errors=True)
    results.sort(key=lambda r: names.index(r[0]))
    print("\n| mutant | file | result | first failing test |\n|---|---|---|---|")
    for n, rc, first, _ in results:
        status = _status(rc) if rc != 0 else "**SURVIVED**"
        print(f"| {n} | {MUTANTS[n][0]} | {status} | {first if rc else ''} |")
    survived = [r for r in results if r[1] not in (1, 2)]
    print(f"\n{len(results) - len(survived)} of {len(results)} mutants killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
