"""Generation parity: trocr_np.generate / recognize against transformers' `model.generate`, live.

Random TrOCR models are built with `conftest.make_hf_trocr`, converted with our converter and loaded
with `load_model`. Greedy and beam ids must be exactly equal to HF's on batches of several images,
per-token log-probabilities and beam scores within TOL of HF's `compute_transition_scores` /
`sequences_scores`, and the decoded text equal to `processor.batch_decode`.

Random models either stop at once or never; to get long and mixed-length outputs the tests rescale
the EOS row of the output projection: "never" keeps the random row (outputs run to the length limit),
"mixed" scales it up just until EOS wins after a few tokens on some images but not others.
`test_outputs_are_not_trivial` checks that this still holds, so the comparisons cannot go vacuous.
"""
import itertools
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import make_hf_trocr, random_line_images  # noqa: E402
from trocr_np import GenerationOptions, generate, load_model, recognize  # noqa: E402
from trocr_np.convert import convert_trocr  # noqa: E402
from trocr_np.generate import GenerationError, ban_repeated_ngrams  # noqa: E402

TOL = 1e-4  # float32 log-probabilities / scores against HF
# Beam scores are sums scaled by len**-length_penalty and can reach |1e3| (length_penalty < 0), where one
# float32 ulp is already 1.2e-4: scores are compared within TOL or SCORE_RTOL (about 8 ulp), whichever is larger.
SCORE_RTOL = 1e-6
N_IMAGES = 5

transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", message=".*max_length.*")


def _eos_row(hf):
    if hf.config.decoder.tie_word_embeddings:
        return hf.decoder.model.decoder.embed_tokens.weight[2]
    return hf.decoder.output_projection.weight[2]


def _lengths(ids, eos=2):
    """Row lengths up to and including the first EOS after the start token (pads may be generated too)."""
    out = []
    for r in ids.tolist():
        hits = [i for i, t in enumerate(r) if i > 0 and t == eos]
        out.append(hits[0] + 1 if hits else len(r))
    return out


def _tune_eos(hf, px):
    """Make EOS win after a few tokens, at a different step per image: move the EOS output row along the
    direction v in which the decoder states of later steps differ from the first steps', by the smallest
    scale at which greedy and beam lengths both differ across the batch with none stopping at once.
    Until EOS is chosen, only its logit changes, so greedy lengths for a scale s follow from one run: row
    b stops at the first step t where eos_logit + s * v.h_bt beats every other logit. Returns whether
    such a scale was found (else the row is left as it was)."""
    base = _eos_row(hf).detach().clone()
    with torch.no_grad():
        out = hf.generate(px, max_new_tokens=24, output_hidden_states=True, output_logits=True,
                          return_dict_in_generate=True)
        hs = torch.stack([step[-1][:, -1] for step in out.decoder_hidden_states], 1)  # (B, steps, D)
        logits = torch.stack(out.logits, 1).clone()                                     # (B, steps, V)
        v = hs[:, 6:].mean((0, 1)) - hs[:, :3].mean((0, 1))
        v = v / v.norm()
        gain, eos0 = hs @ v, logits[..., 2].clone()
        logits[..., 2] = -torch.inf
        need = (logits.max(-1).values - eos0) / gain                                    # scale where EOS wins
        need[gain <= 0] = torch.inf
        for scale in np.unique(need[torch.isfinite(need) & (need > 0)].numpy()):
            stops = [np.flatnonzero(row <= scale) for row in need.numpy()]
            greedy = [int(st[0]) + 2 if len(st) else 25 for st in stops]
            if min(greedy) <= 3:
                break
            if len(set(greedy)) < 2:
                continue
            _eos_row(hf)[:] = base + float(scale) * 1.0001 * v
            beam = _lengths(hf.generate(px, max_new_tokens=24, num_beams=3))
            if _lengths(hf.generate(px, max_new_tokens=24)) == greedy and min(beam) > 3 and len(set(beam)) > 1:
                return True
        _eos_row(hf)[:] = base
    return False


def _build(tmp_path_factory, eos, preset="tiny", **overrides):
    """(hf_model, our_model, pixel_values (N, C, H, W) float32); eos "never" keeps the random EOS row,
    "mixed" tunes it (see module docstring)."""
    tmp = tmp_path_factory.mktemp(f"gen_{preset}")
    kw = dict(init_std=0.1, tie_word_embeddings=False)
    kw.update(overrides)
    hf, hf_dir = make_hf_trocr(tmp, preset, **kw)
    hf.set_attn_implementation("eager")  # HF returns attention maps only in eager mode
    size = hf.config.encoder.image_size
    h, w = (size, size) if isinstance(size, int) else size
    px = torch.randn(N_IMAGES, 3, h, w, generator=torch.Generator().manual_seed(1))
    if eos == "mixed":
        _tune_eos(hf, px)
    hf.save_pretrained(str(hf_dir))
    ours = load_model(convert_trocr(hf_dir, tmp / "ours"))
    return hf, ours, px


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return _build(tmp_path_factory, "mixed")


@pytest.fixture(scope="module")
def never(tmp_path_factory):
    return _build(tmp_path_factory, "never")


def hf_generate(hf, px, **kw):
    with torch.no_grad():
        return hf.generate(px, return_dict_in_generate=True, output_scores=True, **kw)


def assert_same(hf, px, ours, **kw):
    """Run both; ids exactly equal (HF rows are padded after EOS), log-probs and scores within TOL."""
    ref = hf_generate(hf, px, **kw)
    out = generate(ours, px.numpy(), GenerationOptions(**kw))
    pad = hf.generation_config.pad_token_id
    beams = kw.get("num_beams", 1) > 1
    if beams:
        ts = hf.compute_transition_scores(ref.sequences, ref.scores, ref.beam_indices).numpy()
    else:
        ts = hf.compute_transition_scores(ref.sequences, ref.scores, normalize_logits=True).numpy()
    for b, row in enumerate(ref.sequences.tolist()):
        seq = out.sequences[b]
        assert row[:len(seq)] == seq, (b, kw)
        assert all(t == pad for t in row[len(seq):]), (b, kw)
        lp = np.asarray(out.token_logprobs[b])
        assert len(lp) == len(seq) - 1
        np.testing.assert_allclose(lp, ts[b, :len(lp)], atol=TOL, rtol=0)
    if beams:
        np.testing.assert_allclose(out.scores, ref.sequences_scores.numpy(), atol=TOL, rtol=SCORE_RTOL)
    return out


def test_outputs_are_not_trivial(mixed, never):
    """The test models give long outputs (never) and mixed lengths within a batch (mixed)."""
    out = generate(never[1], never[2].numpy(), GenerationOptions(max_new_tokens=24))
    assert all(len(s) == 25 for s in out.sequences)
    assert len({tuple(s) for s in out.sequences}) == N_IMAGES  # images really change the text
    lens = {len(s) for s in generate(mixed[1], mixed[2].numpy(), GenerationOptions(max_new_tokens=24)).sequences}
    lens_beam = {len(s) for s in generate(mixed[1], mixed[2].numpy(), GenerationOptions(max_new_tokens=24, num_beams=3)).sequences}
    assert len(lens) > 1 and len(lens_beam) > 1 and min(lens | lens_beam) > 3


GREEDY_CASES = [dict(max_new_tokens=24), dict(max_length=12), dict(), dict(max_new_tokens=20, no_repeat_ngram_size=2),
                dict(max_new_tokens=20, no_repeat_ngram_size=3), dict(max_new_tokens=16, min_new_tokens=10),
                dict(max_new_tokens=20, eos_token_id=[2, 5])]


@pytest.mark.parametrize("kw", GREEDY_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
@pytest.mark.parametrize("which", ["never", "mixed"])
def test_greedy(request, which, kw):
    hf, ours, px = request.getfixturevalue(which)
    assert_same(hf, px, ours, **kw)


BEAM_CASES = [dict(max_new_tokens=24), dict(max_length=12), dict(max_new_tokens=20, length_penalty=0.5),
              dict(max_new_tokens=20, length_penalty=2.0), dict(max_new_tokens=20, length_penalty=2.0, early_stopping=True),
              dict(max_new_tokens=20, early_stopping="never"), dict(max_new_tokens=20, no_repeat_ngram_size=2),
              dict(max_new_tokens=24, no_repeat_ngram_size=3, early_stopping=True, length_penalty=2.0),
              dict(max_new_tokens=20, eos_token_id=[2, 5]), dict(max_new_tokens=14, min_new_tokens=9)]


@pytest.mark.parametrize("num_beams,kw", list(itertools.product([2, 3, 4, 5], BEAM_CASES))[::2] + [(4, dict())],
                         ids=lambda x: str(x) if isinstance(x, int) else ",".join(f"{k}={v}" for k, v in x.items()))
def test_beam_mixed(mixed, num_beams, kw):
    hf, ours, px = mixed
    assert_same(hf, px, ours, num_beams=num_beams, **kw)


@pytest.mark.parametrize("num_beams,kw", [(2, dict(max_new_tokens=20)), (3, dict(max_new_tokens=20, length_penalty=0.5)),
                                          (5, dict(max_new_tokens=16, no_repeat_ngram_size=2, early_stopping=True))])
def test_beam_long(never, num_beams, kw):
    hf, ours, px = never
    assert_same(hf, px, ours, num_beams=num_beams, **kw)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(num_beams=st.integers(1, 5), max_new_tokens=st.integers(1, 20),
       length_penalty=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]), early_stopping=st.sampled_from([True, False, "never"]),
       no_repeat_ngram_size=st.integers(0, 3), eos=st.sampled_from([2, [2], [2, 5], [5, 2, 9]]),
       min_new_tokens=st.sampled_from([None, 0, 3]), n_images=st.integers(1, N_IMAGES))
def test_random_search_settings(mixed, num_beams, max_new_tokens, length_penalty, early_stopping,
                                no_repeat_ngram_size, eos, min_new_tokens, n_images):
    """Any combination of the supported settings, including edge cases (1 new token, negative penalty)."""
    hf, ours, px = mixed
    kw = dict(num_beams=num_beams, max_new_tokens=max_new_tokens, length_penalty=length_penalty,
              early_stopping=early_stopping, no_repeat_ngram_size=no_repeat_ngram_size, eos_token_id=eos)
    if min_new_tokens is not None:
        kw["min_new_tokens"] = min_new_tokens
    assert_same(hf, px[:n_images], ours, **kw)


@pytest.mark.parametrize("preset", ["small", "sinusoidal", "mismatch", "nonsquare"])
def test_presets(tmp_path_factory, preset):
    """Other architectures (DeiT/relu/scaled/untied, sinusoidal, enc_to_dec_proj, non-square): greedy and beam,
    run to the length limit (the search logic itself is covered on the tiny model above)."""
    tied = preset == "mismatch"  # mismatch keeps the default tied output to cover that path too
    hf, ours, px = _build(tmp_path_factory, "never", preset, tie_word_embeddings=tied)
    px = px[:3]
    assert_same(hf, px, ours, max_new_tokens=12)
    assert_same(hf, px, ours, max_new_tokens=12, num_beams=3, length_penalty=0.5)


def test_cross_attentions(mixed):
    """output_attentions: per generated token and layer, the head-mean cross-attention of the returned beam."""
    hf, ours, px = mixed
    for nb in (1, 3):
        with torch.no_grad():
            ref = hf.generate(px, num_beams=nb, max_new_tokens=12, return_dict_in_generate=True,
                              output_attentions=True)
        out = generate(ours, px.numpy(), GenerationOptions(num_beams=nb, max_new_tokens=12, output_attentions=True))
        for b, seq in enumerate(out.sequences):
            a = out.cross_attentions[b]
            T = len(seq) - 1
            assert a.shape == (T, ours.config.decoder.decoder_layers, ours.config.encoder.seq_len)
            for t in range(T):
                row = b if nb == 1 else int(ref.beam_indices[b, t])
                for layer in range(a.shape[1]):
                    want = ref.cross_attentions[t][layer][row, :, -1].mean(0).numpy()
                    np.testing.assert_allclose(a[t, layer], want, atol=TOL, rtol=0)


def test_recognize_text_matches_processor(tmp_path):
    """End to end on PIL images of several sizes: text == processor.batch_decode(hf.generate(...))."""
    hf, hf_dir = make_hf_trocr(tmp_path, "tiny", tokenizer="json", init_std=0.1, tie_word_embeddings=False)
    proc = transformers.TrOCRProcessor(
        image_processor=transformers.AutoImageProcessor.from_pretrained(str(hf_dir)),
        tokenizer=transformers.AutoTokenizer.from_pretrained(str(hf_dir)))
    images = random_line_images(7, seed=3)
    _tune_eos(hf, proc(images=images, return_tensors="pt").pixel_values)
    hf.save_pretrained(str(hf_dir))
    ours = load_model(convert_trocr(hf_dir, tmp_path / "ours"))
    for kw in (dict(max_new_tokens=20), dict(max_new_tokens=20, num_beams=3)):
        with torch.no_grad():
            ids = hf.generate(proc(images=images, return_tensors="pt").pixel_values, **kw)
        want = proc.batch_decode(ids, skip_special_tokens=True)
        got = recognize(ours, images, GenerationOptions(**kw), batch_size=3)
        assert [r.text for r in got] == want
        assert any(r.text.strip() for r in got)
        for r, row in zip(got, ids.tolist()):
            assert row[1:1 + len(r.token_ids)] == r.token_ids
            assert len(r.token_logprobs) == len(r.token_ids)
            assert r.confidence == pytest.approx(np.mean(np.exp(r.token_logprobs)))
            assert 0.0 < r.confidence <= 1.0


def test_ngram_ban_matches_hf_processor():
    """The n-gram ban against HF's NoRepeatNGramLogitsProcessor on random rows with many repeats."""
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4):
        ids = rng.integers(0, 6, (8, 15))
        scores = rng.standard_normal((8, 10)).astype(np.float32)
        want = NoRepeatNGramLogitsProcessor(n)(torch.from_numpy(ids), torch.from_numpy(scores.copy())).numpy()
        ban_repeated_ngrams(ids, scores, n)
        np.testing.assert_array_equal(scores, want)


def test_generation_config_defaults_and_errors(mixed, tmp_path):
    """Defaults come from generation_config.json like HF; bad arguments and unsupported fields are refused."""
    hf, ours, px = mixed
    cfg = ours.config
    gen = dict(cfg.generation, num_beams=3, max_length=9, no_repeat_ngram_size=2)
    ours_cfg = type(cfg)(**{**cfg.__dict__, "generation": gen})
    hf_gc = transformers.GenerationConfig(**{**hf.generation_config.to_dict(), **gen})
    with torch.no_grad():
        ref = hf.generate(px, generation_config=hf_gc)
    out = generate(type(ours)(config=ours_cfg, params=ours.params), px.numpy())
    for b, row in enumerate(ref.tolist()):
        assert row[:len(out.sequences[b])] == out.sequences[b]
    assert max(map(len, out.sequences)) == 9

    with pytest.raises(GenerationError, match="max_length"):
        generate(ours, px.numpy(), GenerationOptions(max_length=1))
    with pytest.raises(GenerationError, match="num_beams"):
        generate(ours, px.numpy(), GenerationOptions(num_beams=0))
    with pytest.raises(GenerationError, match="max_position_embeddings"):
        generate(ours, px.numpy(), GenerationOptions(max_new_tokens=cfg.decoder.max_position_embeddings + 1))
    with pytest.raises(GenerationError, match="early_stopping"):
        generate(ours, px.numpy(), GenerationOptions(early_stopping="sometimes"))
    bad = type(ours)(config=type(cfg)(**{**cfg.__dict__, "generation": {"do_sample": True}}), params=ours.params)
    with pytest.raises(GenerationError, match="do_sample"):
        generate(bad, px.numpy())


# ----------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    hf, hf_dir = make_hf_trocr(tmp, "tiny", init_std=0.1, tie_word_embeddings=False)
    _tune_eos(hf, torch.randn(N_IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    hf.save_pretrained(str(hf_dir))
    model_dir = convert_trocr(hf_dir, tmp / "ours")
    paths = []
    for i, im in enumerate(random_line_images(3, seed=5)):
        p = tmp / f"line{i}.png"
        im.save(p)
        paths.append(p)
    return model_dir, paths, tmp


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "trocr_np", "recognize", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_recognize_text_and_json(cli_model):
    model_dir, paths, _ = cli_model
    want = recognize(load_model(model_dir), [str(p) for p in paths], GenerationOptions(max_new_tokens=10, num_beams=2))
    r = _cli("--model", model_dir, "--max-new-tokens", 10, "--num-beams", 2, *paths)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:-1] == [w.text.replace("\r", " ").replace("\n", " ") for w in want]
    r = _cli("--model", model_dir, "--max-new-tokens", 10, "--num-beams", 2, "--json", *paths)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [g["image"] for g in got] == [str(p) for p in paths]
    assert [g["text"] for g in got] == [w.text for w in want]
    assert [g["token_ids"] for g in got] == [w.token_ids for w in want]
    np.testing.assert_allclose(np.concatenate([g["token_logprobs"] for g in got]),
                               np.concatenate([w.token_logprobs for w in want]), atol=1e-6)


def test_cli_recognize_bad_image(cli_model):
    """A broken or missing file is reported on stderr by name; the other images are still recognised; exit 1."""
    model_dir, paths, tmp = cli_model
    bad = tmp / "broken.png"
    bad.write_bytes(b"not an image")
    r = _cli("--model", model_dir, "--max-new-tokens", 5, paths[0], bad, tmp / "missing.png", paths[1])
    assert r.returncode == 1
    assert "broken.png" in r.stderr and "missing.png" in r.stderr
    assert len(r.stdout.split("\n")[:-1]) == 2
    r = _cli("--model", tmp / "no_such_model", paths[0])
    assert r.returncode == 2 and "no_such_model" in r.stderr


@pytest.mark.parametrize("num_beams", [1, 3])
def test_threaded_decode_paths(mixed, num_beams, monkeypatch):
    """With every decode-step matrix and attention call forced onto the worker threads (the test
    models are too small to reach the size thresholds), greedy and beam ids still equal HF's."""
    from trocr_np import kernels
    monkeypatch.setattr(kernels, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(kernels, "ATTEND_PARALLEL_MIN_BYTES", 0)
    hf, ours, px = mixed
    assert_same(hf, px, ours, num_beams=num_beams, max_new_tokens=20)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_batch_equals_one_image_at_a_time(mixed, num_beams):
    """Rows (greedy) or an image's beams (beam search) leave the batch as they finish, their K/V cache
    rows with them: each image's ids, log-probabilities, score and cross-attentions equal those of
    generating it alone, and HF's for the whole batch."""
    hf, ours, px = mixed
    o = GenerationOptions(num_beams=num_beams, max_new_tokens=24, output_attentions=True)
    batch = generate(ours, px.numpy(), o)
    assert len({len(s) for s in batch.sequences}) > 1   # rows really finish at different steps
    assert_same(hf, px, ours, num_beams=num_beams, max_new_tokens=24)
    for b in range(len(px)):
        one = generate(ours, px[b:b + 1].numpy(), o)
        assert one.sequences[0] == batch.sequences[b]
        np.testing.assert_allclose(batch.token_logprobs[b], one.token_logprobs[0], atol=TOL, rtol=0)
        np.testing.assert_allclose(batch.scores[b], one.scores[0], atol=TOL, rtol=SCORE_RTOL)
        np.testing.assert_allclose(batch.cross_attentions[b], one.cross_attentions[0], atol=TOL, rtol=0)


def test_drop_rows_keeps_each_surviving_row(mixed):
    """decoder.drop_rows: new row k holds old row order[k] (self K/V up to the filled length) and reads
    its cross K/V (cache.cross_rows, no copy), order is a permutation of the kept rows, and only a
    prefix view of each self K/V buffer remains; a second drop composes with the first."""
    from trocr_np.decoder import drop_rows, init_cache
    _, ours, _ = mixed
    rng = np.random.default_rng(0)
    d, S = ours.config.decoder, ours.config.encoder.seq_len
    enc = rng.standard_normal((6, S, ours.config.encoder.hidden_size)).astype(np.float32)
    cache = init_cache(ours.params, ours.config, enc, 8)
    for t in cache.self_k + cache.self_v:
        t[:, :, :3] = rng.standard_normal(t[:, :, :3].shape)
    cache.length = 3
    before = [[t.copy() for t in lst] for lst in (cache.self_k, cache.self_v, cache.cross_k, cache.cross_v)]
    keep = np.array([1, 2, 4])
    order = drop_rows(cache, keep)
    assert sorted(order.tolist()) == keep.tolist() and len(order) == 3
    for lst, old in zip((cache.self_k, cache.self_v, cache.cross_k, cache.cross_v), before):
        assert len(lst) == d.decoder_layers
        for t, o in zip(lst, old):
            if lst is cache.self_k or lst is cache.self_v:
                assert t.shape[0] == 3 and t.flags.c_contiguous
                np.testing.assert_array_equal(t[:, :, :3], o[order][:, :, :3])
            else:
                assert t.shape[0] == 6  # not copied: remapped
                np.testing.assert_array_equal(t[cache.cross_rows], o[order])
    order2 = drop_rows(cache, np.array([0, 2]))
    np.testing.assert_array_equal(cache.cross_rows, order[order2])
    for t, o in zip(cache.cross_v, before[3]):
        np.testing.assert_array_equal(t[cache.cross_rows], o[order[order2]])
