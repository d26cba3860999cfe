"""Re-create the sample pages in examples/ with the synthetic handwriting generator:

    python examples/make_examples.py

handwritten_note.png:   a short note in Comic Neue Italic (Debian fonts-comic-neue), one of
                        the bundled model's training fonts; the bundled model reads it exactly.
handwritten_note_2.png: the same note in Kaushan Script (fonts-kaushanscript, also a training
                        font), a harder brush script; expect a few character errors.
The rendering seeds were picked among the first five (see weights/README.md). Ground
truth goes to the matching .txt file, one line per written line.
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "weights"))
import synth  # noqa: E402

NOTE = [
    "Dear Anna,",
    "Thank you for the lovely book.",
    "I will call you on Monday",
    "at 10:30 about the garden plan.",
    "See you soon, John",
]
NOTES = {
    "handwritten_note": ("comic-neue-italic", 0, NOTE),
    "handwritten_note_2": ("kaushanscript", 4, NOTE),
}


def main() -> int:
    for name, (font, seed, lines) in NOTES.items():
        img = synth.render_page(lines, font, np.random.default_rng(seed))
        img.save(HERE / f"{name}.png", optimize=True)
        (HERE / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {HERE / name}.png ({img.width}x{img.height}, {font})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
