"""Train the small bundled TrOCR (ViT encoder + TrOCR decoder) on synthetic handwriting.

One command (needs the `train` extra: torch + transformers; never used at run time):

    python weights/train.py --out runs/hw            # GPU: the settings the bundled model used
    python weights/train.py --out runs/hw --device cpu   # 2-core CPU: fewer, smaller steps, ~1 hour

then bundle it with our own converter, like any user checkpoint:

    trocr-np convert runs/hw/hf weights/trocr-np-handwritten-small --dtype float16

What it does, all seeded (`--seed`):
1. builds a byte-level BPE tokenizer (`tokenizers`, RoBERTa specials <s>=0 <pad>=1 </s>=2
   <unk>=3) on a corpus drawn from the text generator, saved as tokenizer.json;
2. builds a VisionEncoderDecoderModel: ViT on a line-shaped 64x768 input (patch 16) and a
   TrOCRForCausalLM decoder, decoder_start_token_id=2 like Microsoft's checkpoints;
3. trains it on lines from weights/synth.py generated on the fly by DataLoader workers
   (sample i of the stream is a pure function of (seed, i)), AdamW + warmup/cosine;
4. saves with save_pretrained (+ preprocessor_config.json, generation_config.json,
   tokenizer.json) and writes the character error rate on held-out text in the training
   fonts and on text in the held-out fonts to eval.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))   # the repo, for trocr_np.metrics
import synth  # noqa: E402
from trocr_np.metrics import edit_distance  # noqa: E402

IMAGE_H, IMAGE_W = 64, 768
MAX_TOKENS = 64          # label length cap (ids incl. <s> and </s>); generation max_length
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
TRAIN_SEED_OFFSET, VALID_TEXT_OFFSET, VALID_FONT_OFFSET, TOKENIZER_OFFSET = 0, 1000, 2000, 3000

PRESETS = {  # model shape and run length per device
    "cuda": dict(enc_layers=8, enc_dim=256, enc_heads=4, dec_layers=6, dec_dim=256, dec_heads=4,
                 steps=20000, batch_size=192, lr=6e-4, workers=15, replay=300000, ctc=0.5),
    "cpu": dict(enc_layers=4, enc_dim=192, enc_heads=3, dec_layers=3, dec_dim=192, dec_heads=3,
                steps=1200, batch_size=16, lr=5e-4, workers=1, replay=0, ctc=0.5),
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


# --------------------------------------------------------------------------- tokenizer

def build_tokenizer(seed: int, fonts: list[str], vocab_size: int, n_lines: int = 60000):
    """Byte-level BPE trained on generated lines (upper-cased as often as the
    training fonts are caps-only, so capital words get merges too)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    words = synth.load_words()
    rng = np.random.default_rng(seed + TOKENIZER_OFFSET)
    p_caps = sum(f in synth.CAPS_FONTS for f in fonts) / len(fonts)
    corpus = []
    for _ in range(n_lines):
        t = synth.random_text(rng, words)
        corpus.append(t.upper() if rng.random() < p_caps else t)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


# --------------------------------------------------------------------------- data

class LineStream(IterableDataset):
    """Samples [start, start + n) of a synth stream (n=None: endless), split across
    DataLoader workers by index. Yields (uint8 (H, W, 3) image, label ids, text)."""

    def __init__(self, seed, fonts, tokenizer_json, start=0, n=None):
        self.seed, self.fonts, self.tokenizer_json, self.start, self.n = seed, fonts, tokenizer_json, start, n

    def __iter__(self):
        from tokenizers import Tokenizer
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        tok = Tokenizer.from_str(self.tokenizer_json)
        words = synth.load_words()
        i = self.start + wid
        while self.n is None or i < self.start + self.n:
            s = synth.make_sample(i, self.seed, self.fonts, words)
            ids = tok.encode(s.text).ids
            if len(ids) <= MAX_TOKENS:  # (practically never longer)
                yield preprocess_uint8(s.image), ids, s.text
            i += nw


def preprocess_uint8(img) -> np.ndarray:
    """The HF ViTImageProcessor resize step (PIL bilinear to H x W), kept as uint8 so
    workers ship 4x less data; rescale/normalise happen on the device. (H, W, 3)."""
    from PIL import Image
    return np.asarray(img.convert("RGB").resize((IMAGE_W, IMAGE_H), Image.BILINEAR))


def collate(batch):
    imgs, ids, texts = zip(*batch)
    L = max(len(x) for x in ids)
    labels = torch.full((len(ids), L), -100, dtype=torch.long)
    for b, x in enumerate(ids):
        labels[b, : len(x)] = torch.tensor(x)
    return torch.from_numpy(np.stack(imgs)), labels, list(texts)


def to_pixels(u8: torch.Tensor, device) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [-1, 1] (rescale 1/255, mean=std=0.5)."""
    x = u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float() * (1 / 255)
    return (x - 0.5) / 0.5


# --------------------------------------------------------------------------- model

def build_model(p: dict, vocab_size: int):
    from transformers import TrOCRConfig, TrOCRForCausalLM, ViTConfig, ViTModel, VisionEncoderDecoderModel
    enc_cfg = ViTConfig(hidden_size=p["enc_dim"], num_hidden_layers=p["enc_layers"],
                        num_attention_heads=p["enc_heads"], intermediate_size=4 * p["enc_dim"],
                        image_size=[IMAGE_H, IMAGE_W], patch_size=16, num_channels=3, qkv_bias=True,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12)
    dec_cfg = TrOCRConfig(vocab_size=vocab_size, d_model=p["dec_dim"], decoder_layers=p["dec_layers"],
                          decoder_attention_heads=p["dec_heads"], decoder_ffn_dim=4 * p["dec_dim"],
                          activation_function="gelu", max_position_embeddings=MAX_TOKENS * 2,
                          dropout=0.1, attention_dropout=0.0, activation_dropout=0.0,
                          scale_embedding=True, use_learned_position_embeddings=True,
                          layernorm_embedding=True, cross_attention_hidden_size=p["enc_dim"],
                          tie_word_embeddings=False, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                          decoder_start_token_id=2, is_decoder=True, add_cross_attention=True)
    model = VisionEncoderDecoderModel(encoder=ViTModel(enc_cfg, add_pooling_layer=False),
                                      decoder=TrOCRForCausalLM(dec_cfg))
    c = model.config
    c.decoder_start_token_id, c.pad_token_id, c.eos_token_id, c.bos_token_id = 2, 1, 2, 0
    c.vocab_size = vocab_size
    c.tie_word_embeddings = False
    g = model.generation_config
    g.decoder_start_token_id, g.bos_token_id, g.eos_token_id, g.pad_token_id = 2, 0, 2, 1
    g.max_length, g.num_beams, g.use_cache = MAX_TOKENS, 1, True
    return model


def save(model, tok, out: Path) -> None:
    """save_pretrained + the files a Hub TrOCR folder has (tokenizer, image processor)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))
    try:  # tokenizer_config.json / special_tokens_map.json so transformers can load it too
        from transformers import PreTrainedTokenizerFast
        PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"), bos_token="<s>", eos_token="</s>",
                                pad_token="<pad>", unk_token="<unk>").save_pretrained(out)
    except Exception as e:  # optional nicety; tokenizer.json is what we need
        print("note: tokenizer_config.json not written:", e)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True,
        "size": {"height": IMAGE_H, "width": IMAGE_W}, "resample": 2, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5]}, indent=2))


# --------------------------------------------------------------------------- eval

@torch.no_grad()
def evaluate(model, tok, fonts, seed, n, device, workers, batch_size=256, dtype=None):
    """CER (sum of edit distances / sum of reference lengths) of greedy decoding on
    samples [0, n) of stream `seed`, plus a few examples."""
    model.eval()
    dl = DataLoader(LineStream(seed, fonts, tok.to_str(), 0, n), batch_size=batch_size,
                    num_workers=workers, collate_fn=collate)
    dist = total = 0
    examples = []
    for u8, _, texts in dl:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            seqs = model.generate(pixel_values=to_pixels(u8, device), max_length=MAX_TOKENS, num_beams=1)
        hyps = tok.decode_batch(seqs.tolist(), skip_special_tokens=True)
        for r, h in zip(texts, hyps):
            dist, total = dist + edit_distance(r, h), total + len(r)
            if len(examples) < 12:
                examples.append({"ref": r, "hyp": h})
    model.train()
    return {"cer": dist / max(total, 1), "lines": n, "chars": total, "examples": examples}


def replay_batches(dl, batch_size, capacity, device):
    """Training batches when the GPU outpaces the CPU line generator: a background
    thread streams fresh lines into a ring buffer on the device; each step trains on all
    fresh lines that arrived (up to a batch) topped up with random earlier ones.
    Yields (uint8 (B, H, W, 3), labels (B, L), number of fresh lines)."""
    import queue
    import threading
    q = queue.Queue(maxsize=64)

    def pump():
        for u8, labels, _ in dl:
            q.put((u8, labels))
    threading.Thread(target=pump, daemon=True).start()
    imgs = labs = None
    n = head = 0
    g = torch.Generator(device=device).manual_seed(0)
    while True:
        fresh = []
        while True:
            try:
                fresh.append(q.get(block=n < batch_size, timeout=600))
            except queue.Empty:
                break
            if sum(len(f[0]) for f in fresh) >= batch_size:
                break
        for u8, labels in fresh:
            if imgs is None:
                imgs = torch.empty((capacity, *u8.shape[1:]), dtype=torch.uint8, device=device)
                labs = torch.full((capacity, MAX_TOKENS), -100, dtype=torch.long, device=device)
            k = len(u8)
            idx = (head + torch.arange(k, device=device)) % capacity
            imgs[idx] = u8.to(device, non_blocking=True)
            labs[idx] = -100
            labs[idx, : labels.shape[1]] = labels.to(device)
            head, n = (head + k) % capacity, min(capacity, n + k)
        k = min(batch_size, sum(len(f[0]) for f in fresh))
        new_idx = (head - 1 - torch.arange(k, device=device)) % capacity
        old_idx = torch.randint(0, n, (batch_size - k,), device=device, generator=g)
        idx = torch.cat([new_idx, old_idx])
        lab = labs[idx]
        L = int((lab != -100).sum(1).max())
        yield imgs[idx], lab[:, :L], k


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--vocab-size", type=int, default=1024)
    ap.add_argument("--time-limit", type=float, default=None,
                    help="stop training after this many seconds (then save and evaluate)")
    ap.add_argument("--replay", type=int, default=None,
                    help="GPU replay buffer size in lines (0: pure streaming, exactly reproducible)")
    ap.add_argument("--ctc", type=float, default=None,
                    help="weight of an auxiliary CTC loss on the encoder columns (speeds up learning "
                         "to look at the image; the CTC head is dropped when saving)")
    ap.add_argument("--init", type=Path, default=None,
                    help="continue from a saved HF folder (its tokenizer.json is reused)")
    ap.add_argument("--warmup", type=int, default=None, help="warmup steps (default 5%% of --steps)")
    ap.add_argument("--eval-lines", type=int, default=1000)
    ap.add_argument("--bench-data", type=float, default=0, help="only time the data loader for N seconds")
    args = ap.parse_args(argv)
    p = dict(PRESETS[args.device])
    for k in ("steps", "batch_size", "lr", "workers", "replay", "ctc"):
        if getattr(args, k) is not None:
            p[k] = getattr(args, k)
    seed_everything(args.seed)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    train_fonts = synth.resolve_fonts("train")
    heldout_fonts = synth.resolve_fonts("heldout")
    print("fonts train:", train_fonts, "heldout:", heldout_fonts, flush=True)

    t0 = time.time()
    if args.init:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(args.init / "tokenizer.json"))
    else:
        tok = build_tokenizer(args.seed, train_fonts, args.vocab_size)
    print(f"tokenizer: {tok.get_vocab_size()} tokens in {time.time() - t0:.1f}s", flush=True)
    stream = LineStream(args.seed + TRAIN_SEED_OFFSET, train_fonts, tok.to_str())
    dl = DataLoader(stream, batch_size=p["batch_size"], num_workers=p["workers"], collate_fn=collate,
                    pin_memory=device.type == "cuda", prefetch_factor=4 if p["workers"] else None,
                    persistent_workers=False)
    if args.bench_data:
        t, n = time.time(), 0
        for u8, _, _ in dl:
            n += len(u8)
            if time.time() - t > args.bench_data:
                break
        print(f"data: {n / (time.time() - t):.0f} lines/s with {p['workers']} workers", flush=True)
        return 0

    if args.init:
        from transformers import VisionEncoderDecoderModel
        model = VisionEncoderDecoderModel.from_pretrained(args.init, dtype=torch.float32).float().to(device)
        model.encoder.pooler = None  # from_pretrained adds an (unused, untrained) ViT pooler
    else:
        model = build_model(p, tok.get_vocab_size()).to(device)
    # auxiliary CTC head: encoder patch columns (height-pooled) -> token ids, blank = <pad>
    enc_dim = model.config.encoder.hidden_size
    ctc_head = torch.nn.Linear(enc_dim, tok.get_vocab_size()).to(device)
    n_enc = sum(x.numel() for x in model.encoder.parameters())
    n_dec = sum(x.numel() for x in model.decoder.parameters())
    print(f"params: encoder {n_enc / 1e6:.2f}M decoder {n_dec / 1e6:.2f}M; preset {p}", flush=True)
    named = list(model.named_parameters()) + [("ctc." + n, x) for n, x in ctc_head.named_parameters()]
    decay = [x for n, x in named if x.ndim >= 2 and "embed" not in n]
    no_decay = [x for n, x in named if not (x.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=p["lr"], betas=(0.9, 0.98), eps=1e-8, fused=device.type == "cuda")
    warmup = args.warmup if args.warmup is not None else max(1, int(0.05 * p["steps"]))

    def lr_at(step, frac):  # linear warmup, then cosine down to 5% as frac goes 0 -> 1
        if step < warmup:
            return p["lr"] * (step + 1) / warmup
        f = min(1.0, (frac - 0.05) / 0.95) if frac > 0.05 else 0.0
        return p["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * f)))

    amp = torch.bfloat16 if device.type == "cuda" else None
    log, step, t_start, seen, ema = [], 0, time.time(), 0, None
    limit = args.time_limit or float("inf")
    batches = replay_batches(dl, p["batch_size"], args.replay, device) if args.replay else iter(dl)
    model.train()
    for u8, labels, fresh in batches:
        el = time.time() - t_start
        # cosine over steps, or over the time budget when that runs out first
        frac = max(step / p["steps"], el / limit)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, frac)
        labels = labels.to(device, non_blocking=True)
        # teacher forcing: decoder input = labels shifted right, starting with </s> (id 2)
        dec_in = torch.cat([torch.full_like(labels[:, :1], 2), labels[:, :-1]], 1).masked_fill(
            torch.cat([torch.zeros_like(labels[:, :1]), labels[:, :-1]], 1) == -100, 1)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(pixel_values=to_pixels(u8, device), decoder_input_ids=dec_in)
            if p["ctc"]:
                gh, gw = IMAGE_H // 16, IMAGE_W // 16
                cols = out.encoder_last_hidden_state[:, 1:].reshape(len(u8), gh, gw, -1).mean(1)
                ctc_logits = ctc_head(cols)                              # (B, W/16, V)
        logits = out.logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100, label_smoothing=0.1)
        if p["ctc"]:
            targ = labels[:, 1:]                                         # drop <s>
            keep = (targ != -100) & (targ != 2)                          # and </s>, padding
            lp = ctc_logits.float().log_softmax(-1).transpose(0, 1)      # (T, B, V)
            ctc = torch.nn.functional.ctc_loss(
                lp, targ.masked_fill(~keep, 0), torch.full((len(u8),), lp.shape[0], dtype=torch.long),
                keep.sum(1), blank=1, zero_infinity=True)
            loss = loss + p["ctc"] * ctc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([x for _, x in named], 1.0)
        opt.step()
        step, seen = step + 1, seen + (fresh if isinstance(fresh, int) else len(u8))
        if step % 50 == 0 or step == 1:
            ema = loss.item() if ema is None else 0.8 * ema + 0.2 * loss.item()
            print(f"step {step} loss {ema:.4f} lr {opt.param_groups[0]['lr']:.2e} fresh {seen} lines "
                  f"({seen / el if el else 0:.0f}/s) {el:.0f}s", flush=True)
            log.append({"step": step, "loss": round(ema, 4), "elapsed": round(el, 1), "fresh": seen})
        if step >= p["steps"] or el > limit:
            break
    train_s = time.time() - t_start
    hf = args.out / "hf"
    model.float()
    save(model, tok, hf)
    print(f"saved {hf} after {step} steps, {seen} lines, {train_s:.0f}s", flush=True)

    res = {"steps": step, "lines_seen": seen, "train_seconds": round(train_s, 1), "preset": p,
           "seed": args.seed, "train_fonts": train_fonts, "heldout_fonts": heldout_fonts, "log": log}
    if args.eval_lines:
        for name, fonts, off in (("heldout_text_train_fonts", train_fonts, VALID_TEXT_OFFSET),
                                 ("heldout_fonts", heldout_fonts, VALID_FONT_OFFSET)):
            t = time.time()
            res[name] = evaluate(model, tok, fonts, args.seed + off, args.eval_lines, device,
                                 p["workers"], dtype=amp)
            print(f"CER {name}: {res[name]['cer']:.4f} ({time.time() - t:.0f}s)", flush=True)
    (args.out / "eval.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
