"""What people write on a page: letters, notes, lists and forms as blocks of text.

Prose comes from Debian's `fortunes-min` (real English sentences: quotations, jokes,
literature) mixed with everyday letter and note sentences built in here; without the
package the built-in sentences alone are used. Names, addresses, dates and amounts are
made up from small lists. Everything is a pure function of the numpy Generator passed in.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

FORTUNE_FILES = tuple(f"/usr/share/games/fortunes/{n}" for n in ("fortunes", "literature", "riddles"))
KINDS = ("letter", "note", "list", "form")

# Everyday sentences of letters and notes (also the fallback corpus without fortunes-min).
EVERYDAY = """Thank you so much for the lovely card and the photos.
I hope you are all well and that the weather is kinder where you are.
We finally got the garden sorted out last weekend.
The children have been asking when you will visit again.
Please let me know if Saturday still works for you.
I called the bank this morning but nobody could help.
Don't forget to feed the cat before you leave.
The meeting has been moved to Thursday at half past two.
Could you pick up some bread and milk on the way home?
I left the keys with Mrs. Patel next door.
It was wonderful to see you at the wedding.
Work has been busy, but I'm taking a few days off in June.
The train was late again, so I missed the first hour.
We are thinking of painting the kitchen a pale green.
I've enclosed the cheque for the deposit.
My sister says hello and sends her love.
Remember to bring your passport and the tickets.
The doctor says I should rest for another week.
We walked along the river and had lunch at the old mill.
I'm sorry I couldn't make it to your party.
Let's meet outside the library at ten.
The plumber is coming between nine and twelve.
Grandma's recipe needs two eggs, not three.
I finished the book you lent me; it was brilliant.
Call me when you get this, it's about the car.
The rent is due on the first of the month.
I think we should leave early to avoid the traffic.
Your parcel arrived on Tuesday, safe and sound.
We'll need chairs for at least twenty people.
It rained all week, but the roses are doing well.
Tom has started at the new school and seems happy.
Please water the tomatoes every other day.
I have booked a table for four at seven o'clock.
The heating is broken again, so bring a jumper.
Thanks again for all your help with the move.
Back in ten minutes, wait here.
Ask Peter about the invoice from March.
I'll be home late tonight, don't wait up.
The spare key is under the blue pot.
Happy birthday, and many happy returns of the day!""".split("\n")

FIRST = ("Anna John Mary Peter Sarah James Emma David Laura Michael Sophie Daniel Alice Robert Grace "
         "Thomas Helen Mark Lucy Paul Rachel George Kate Oliver Jane Henry Ruth Sam Clare Ben "
         "Maria Ahmed Priya Wei Olga Luis Fatima Jonas Ingrid Kofi").split()
LAST = ("Smith Jones Taylor Brown Williams Wilson Evans Thomas Johnson Roberts Walker Wright Hughes "
        "Green Hall Wood Clarke Patel Murphy Kelly Martin Novak Schmidt Rossi Garcia Dubois Okafor "
        "Nguyen Kowalski Jensen").split()
STREETS = "High Church Station Mill Park Victoria Queen's Oak Elm Bridge Green Manor".split()
STREET_KIND = "Street Road Lane Avenue Close Drive Way".split()
TOWNS = "Leeds Bristol York Bath Cork Boston Denver Leiden Hull Perth Oxford Dover".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = ("January February March April May June July August September October November "
          "December").split()
ITEMS = ("milk bread eggs butter apples bananas coffee tea rice pasta onions potatoes cheese "
         "tomatoes yoghurt flour sugar soap batteries stamps envelopes lightbulbs bin bags "
         "toothpaste oranges carrots chicken beans cereal juice honey").split()
TASKS = ("call the dentist|pay gas bill|book MOT|email Sarah re: Friday|return library books|"
         "fix the back gate|renew passport|buy birthday card for Mum|clean the car|post parcel|"
         "water plants|defrost freezer|pick up dry cleaning|check train times|tidy garage|"
         "order printer ink|cancel gym|ring the council|take the bins out|write to Grandad").split("|")
TITLES = {"list": ("Shopping list", "To do", "Things to do", "Groceries", "Packing list", "Jobs this week",
                   "Don't forget!", "Weekend"),
          "note": ("Note", "Reminder", "Phone message", "For Dad", "Hi!", "Important", "Notes")}
GREETINGS = ("Dear {f},", "Dear {f} and {g},", "Hi {f},", "Dear Mr. {l},", "Dear Mrs. {l},", "Hello {f}!")
CLOSINGS = ("Best wishes,", "With love,", "Yours sincerely,", "Love,", "All the best,", "Cheers,",
            "Kind regards,", "See you soon,", "Thanks again,")
FORM_FIELDS = ("Name", "Address", "Date", "Phone", "Date of birth", "Reference", "Amount", "Signed",
               "Town", "Email", "Order no.", "Notes", "Occupation", "Nationality")


@dataclass(frozen=True)
class Block:
    """A run of text the writer puts on the page. `wrap` paragraphs flow over lines;
    the others are one line each. `label` is a printed form label before the text."""
    text: str
    wrap: bool = False
    align: str = "left"       # left | right | centre
    indent: float = 0.0       # extra left indent, in x-heights
    underline: bool = False
    label: str = ""


@lru_cache(maxsize=4)
def load_sentences(paths: tuple[str, ...] = FORTUNE_FILES) -> tuple[str, ...]:
    """ASCII sentences of 3..140 characters from fortune files (attributions and
    dialogue layouts dropped) plus EVERYDAY. (N,) tuple."""
    out = []
    for p in paths:
        try:
            text = Path(p).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for cookie in text.split("\n%\n"):
            lines = [ln for ln in cookie.split("\n") if not re.match(r"^\s*(--|[A-Z][a-z]*:\s)", ln)]
            flat = " ".join(" ".join(lines).split())
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", flat):
                if 3 <= len(s) <= 140 and s.isascii() and s.isprintable() and re.match(r"^[\"']?[A-Z]", s) \
                        and " " in s and s.count('"') % 2 == 0 and s.count("(") == s.count(")") \
                        and not re.search(r"[<>{}\[\]|\\_~^@#=]|\.\.\.|\(tm\)", s):
                    out.append(s)
    return tuple(dict.fromkeys(out + EVERYDAY))


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _ordinal(d: int) -> str:
    return f"{d}{'th' if 10 <= d % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


def date(rng) -> str:
    d, m, y = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(1960, 2031))
    return _pick(rng, (f"{d}/{m}/{y}", f"{d:02d}.{m:02d}.{y % 100:02d}", f"{_ordinal(d)} {MONTHS[m - 1]} {y}",
                       f"{_pick(rng, DAYS)[:3]} {_ordinal(d)}", f"{MONTHS[m - 1][:3]} {d}, {y}",
                       f"{_pick(rng, DAYS)} {d} {MONTHS[m - 1]}"))


def name(rng) -> str:
    f, l = _pick(rng, FIRST), _pick(rng, LAST)
    return _pick(rng, (f"{f} {l}", f"{f[0]}. {l}", f"{f} {l}", f"Dr. {l}"))


def address(rng) -> str:
    return f"{int(rng.integers(1, 240))} {_pick(rng, STREETS)} {_pick(rng, STREET_KIND)}, {_pick(rng, TOWNS)}"


def amount(rng) -> str:
    return _pick(rng, (f"${rng.integers(1, 900)}.{rng.integers(0, 100):02d}", f"{rng.integers(2, 99)}.{rng.integers(0, 100):02d}",
                       f"${rng.integers(5, 5000)}", f"{rng.integers(1, 60)} EUR"))


def phone(rng) -> str:
    return f"0{rng.integers(1000, 9999)} {rng.integers(100000, 999999)}"


def prose(rng, n_sentences: int, everyday: float = 0.5) -> str:
    """n sentences, a share `everyday` from EVERYDAY and the rest from the corpus."""
    corpus = load_sentences()
    out = []
    while len(out) < n_sentences:
        s = _pick(rng, EVERYDAY) if rng.random() < everyday else _pick(rng, corpus)
        if s not in out:
            out.append(s)
    return " ".join(out)


def _field_value(rng, field: str) -> str:
    values = {"Name": name, "Signed": name, "Address": address, "Date": date, "Date of birth": date,
              "Phone": phone, "Amount": amount, "Town": lambda r: _pick(r, TOWNS)}
    if field in values:
        return values[field](rng)
    if field == "Email":
        return f"{_pick(rng, FIRST).lower()}.{_pick(rng, LAST).lower()}@{_pick(rng, ('mail', 'post', 'web'))}.com"
    if field in ("Reference", "Order no."):
        return f"{_pick(rng, 'ABCDEFGHKMNPRSTX')}{rng.integers(1000, 99999)}"
    if field in ("Occupation", "Nationality"):
        return _pick(rng, ("teacher", "nurse", "retired", "student", "Irish", "British", "Dutch", "engineer"))
    return _pick(rng, EVERYDAY).rstrip(".")


def document(rng, kind: str) -> list[Block]:
    """The blocks of one page of `kind` (KINDS), top to bottom."""
    if kind == "letter":
        f, g, l = _pick(rng, FIRST), _pick(rng, FIRST), _pick(rng, LAST)
        out = []
        if rng.random() < 0.5:
            out.append(Block(address(rng), align="right"))
        if rng.random() < 0.7:
            out.append(Block(date(rng), align="right"))
        out.append(Block(_pick(rng, GREETINGS).format(f=f, g=g, l=l)))
        for _ in range(int(rng.integers(1, 5))):
            out.append(Block(prose(rng, int(rng.integers(2, 7)), everyday=0.55), wrap=True,
                             indent=float(rng.choice([0, 0, 1.5, 3, 4]))))
        out.append(Block(_pick(rng, CLOSINGS), indent=float(rng.choice([0, 0, 8, 14]))))
        out.append(Block(_pick(rng, FIRST), indent=float(rng.choice([0, 1, 8, 14])), underline=rng.random() < 0.15))
        return out
    if kind == "note":
        out = []
        if rng.random() < 0.6:
            title = _pick(rng, TITLES["note"])
            out.append(Block(title + ("" if title[-1] in "!:" else _pick(rng, ("", ":", " -"))),
                             underline=rng.random() < 0.6))
        out.append(Block(prose(rng, int(rng.integers(1, 4)), everyday=0.75), wrap=True))
        if rng.random() < 0.5:
            out.append(Block(_pick(rng, ("Thanks, ", "- ", "Love ", "")) + _pick(rng, FIRST)
                             + _pick(rng, ("", " x", " xx")), align=_pick(rng, ("left", "right"))))
        if rng.random() < 0.3:
            out.append(Block(date(rng) + _pick(rng, ("", f" {rng.integers(7, 12)}am", f" {rng.integers(1, 10)}:{rng.integers(0, 60):02d}"))))
        return out
    if kind == "list":
        out = [Block(_pick(rng, TITLES["list"]) + _pick(rng, ("", ":")), underline=rng.random() < 0.7,
                     align="centre" if rng.random() < 0.2 else "left")]
        bullet = _pick(rng, ("- ", "* ", "", "{i}. ", "{i}) ", "o "))
        pool = list(ITEMS if rng.random() < 0.5 else TASKS)
        rng.shuffle(pool)
        for i, item in enumerate(pool[: int(rng.integers(3, 22))]):
            if rng.random() < 0.15:
                item += _pick(rng, (f" x{rng.integers(2, 7)}", f" ({rng.integers(2, 12)})", f" - {amount(rng)}", "!"))
            out.append(Block(bullet.format(i=i + 1) + item, indent=float(rng.uniform(0, 1.2))))
        return out
    if kind == "form":
        out = [Block("", label=_pick(rng, ("Application form", "Order form", "Registration", "Visitor record",
                                           "Change of address", "Booking form")), align="centre")]
        fields = list(FORM_FIELDS)
        rng.shuffle(fields)
        for fld in fields[: int(rng.integers(3, 12))]:
            out.append(Block(_field_value(rng, fld), label=fld + ":"))
        if rng.random() < 0.5:
            out.append(Block(prose(rng, int(rng.integers(1, 3)), everyday=0.9), wrap=True, label="Comments:"))
        return out
    raise ValueError(f"unknown page kind {kind!r}; known: {', '.join(KINDS)}")
