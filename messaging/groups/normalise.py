"""The normalised forms the peer-group safety checks compare, so that lookalike spellings of a phone
number, an address or a name are caught as the plain spelling would be.

- :func:`clean`: Unicode NFKC (fullwidth and mathematical letters and digits become plain ones), with
  invisible characters removed: zero-width spaces and joiners, bidi controls, soft hyphens, variation
  selectors (Unicode general category ``Cf`` and friends).
- :func:`skeleton`: the Unicode TR39 confusable skeleton, from ICU's SpoofChecker (``Sofia`` spelled with a
  Cyrillic o and ``Sofia`` share one), taken case-insensitively.
- :func:`join_spaced_letters`: ``D a n i e l`` and ``D.a.n.i.e.l`` become ``Daniel``.
- :func:`digit_runs`: the numbers a text spells, with separators between digits ignored
  (``555 - 010 - 0201``, ``555/010/0201``, ``555_010_0177``) and digit lookalikes (``O``, ``l``)
  read as digits inside mostly-numeric runs.
- :func:`name_key`: the form names are compared in (skeleton, no spaces or punctuation, no titles).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import icu

# Invisible but not in category Cf: combining grapheme joiner, Hangul fillers, Mongolian selectors.
_INVISIBLE_EXTRA = {0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F}
# A letter or digit standing alone ("D a n 1 e l": digits are lookalikes of letters too).
_LETTER = r"[^\W_]"
_NOT_ALNUM_BEFORE = r"(?<![^\W_])"
_NOT_ALNUM_AFTER = r"(?![^\W_])"
# Three or more single letters, each standing alone, one to three separators apart.
SPACED_LETTERS = re.compile(
    rf"{_NOT_ALNUM_BEFORE}{_LETTER}{_NOT_ALNUM_AFTER}(?:[\s._*·•/\\|~+-]{{1,3}}{_LETTER}{_NOT_ALNUM_AFTER}){{2,}}"
)
SPACED_SEPARATORS = re.compile(r"[\s._*·•/\\|~+-]+")
# What may stand between two digits of one number (up to four characters: "555 - 010").
DIGIT_SEPARATORS = "[\\s._/\\\\|()\\[\\]\u00b7\u2022*~,\u2013\u2014-]"
DIGIT_RUN = re.compile(rf"\d(?:{DIGIT_SEPARATORS}{{0,4}}\d)*")
TITLES = frozenset(
    {"dr", "doctor", "nurse", "rn", "md", "np", "pa", "prof", "professor", "sister", "matron", "pharmacist", "phd"}
)


@lru_cache(maxsize=1)
def _checker() -> icu.SpoofChecker:
    return icu.SpoofChecker()


def _visible(char: str) -> bool:
    code = ord(char)
    if code in _INVISIBLE_EXTRA or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:
        return False
    return unicodedata.category(char) != "Cf"


def clean(text: str) -> str:
    """NFKC, without invisible characters (zero-width, bidi controls, soft hyphens, selectors)."""
    without = "".join(char for char in unicodedata.normalize("NFKC", text) if _visible(char))
    return unicodedata.normalize("NFKC", without)


def ascii_digits(text: str) -> str:
    """Every decimal digit of any script as its ASCII digit (Arabic-Indic five → ``5``)."""
    return "".join(str(unicodedata.decimal(char)) if char.isdecimal() else char for char in text)


def skeleton(text: str) -> str:
    """The TR39 skeleton of the cleaned, case-folded text (compare skeletons, never show them)."""
    # Skeleton, case-fold, skeleton again: a capital Greek Nu is an N, its small form a v.
    checker = _checker()
    return checker.getSkeleton(0, checker.getSkeleton(0, ascii_digits(clean(text))).casefold()).casefold()


@lru_cache(maxsize=4096)
def _char_latin(char: str) -> str:
    sk = _checker().getSkeleton(0, char)
    return sk if sk.isascii() else char


def latin(text: str) -> str:
    """The cleaned text with every non-ASCII lookalike replaced by its ASCII skeleton (Cyrillic
    lookalikes of ``Sofia`` become ``Sofia``); ASCII is left as written. For pattern matching
    (addresses, labels), never for display."""
    return "".join(char if char.isascii() else _char_latin(char) for char in ascii_digits(clean(text)))


def join_spaced_letters(text: str) -> str:
    """The cleaned text with runs of three or more lone letters joined into one word."""
    return SPACED_LETTERS.sub(lambda match: SPACED_SEPARATORS.sub("", match.group(0)), clean(text))


@lru_cache(maxsize=256)
def _digit_like(char: str) -> str | None:
    sk = _checker().getSkeleton(0, char)
    if sk in ("O", "o"):
        return "0"
    if sk == "l":
        return "1"
    return sk if len(sk) == 1 and sk.isdigit() and sk.isascii() else None


def _token_maps_to_digits(token: str) -> bool:
    return all(char.isdigit() or _digit_like(char) is not None for char in token)


def digit_runs(text: str) -> list[str]:
    """The digit strings ``text`` spells (separators between digits dropped). A lookalike (``O`` for
    0, ``l`` for 1) counts as a digit inside a word made only of digits and lookalikes, standing in a
    run whose characters are mostly real digits (``555 OlO O2Ol`` yes, ``lol`` or ``call`` no)."""
    plain = ascii_digits(clean(text))
    mapped = list(plain)
    real = [char.isdigit() for char in plain]
    for token in re.finditer(r"[^\W_]+", plain):
        if not token.group(0).isdigit() and _token_maps_to_digits(token.group(0)):
            for index in range(token.start(), token.end()):
                if not real[index]:
                    mapped[index] = _digit_like(plain[index]) or plain[index]
    view = "".join(mapped)
    runs = []
    for match in DIGIT_RUN.finditer(view):
        digits = [i for i in range(match.start(), match.end()) if view[i].isdigit()]
        genuine = sum(1 for i in digits if real[i])
        if genuine * 2 < len(digits):
            # Mostly letters read as digits: keep only the genuine digits' own runs.
            runs.extend(re.findall(r"\d+", "".join(view[i] if real[i] else " " for i in digits)))
            continue
        runs.append("".join(view[i] for i in digits))
    return runs


_AT = re.compile(r"\s*(?:[(\[{<]\s*at\s*[)\]}>]|@)\s*", re.IGNORECASE)
_DOT = re.compile(r"\s*[(\[{<]\s*dot\s*[)\]}>]\s*", re.IGNORECASE)
_SPACED_NO_DOT = re.compile(
    rf"{_NOT_ALNUM_BEFORE}{_LETTER}{_NOT_ALNUM_AFTER}(?:[\s_*·•~-]{{1,3}}{_LETTER}{_NOT_ALNUM_AFTER}){{2,}}"
)
_DOMAIN = re.compile(r"@[\w-]+(?:\s*\.\s*[\w-]+)+")


def address_view(text: str) -> str:
    """The text as an e-mail address pattern should see it: lookalikes latinised, ``(at)``/``(dot)``
    and spaces around ``@`` and the domain's dots removed, spaced-out letters joined."""
    view = _DOT.sub(".", _AT.sub("@", latin(text)))
    view = _SPACED_NO_DOT.sub(lambda match: re.sub(r"[\s_*·•~-]+", "", match.group(0)), view)
    return _DOMAIN.sub(lambda match: re.sub(r"\s+", "", match.group(0)), view)


@lru_cache(maxsize=1)
def title_skeletons() -> frozenset[str]:
    """The titles as they appear in skeletons (``md`` is ``rnd`` there)."""
    return frozenset(skeleton(title) for title in TITLES)


def name_key(name: str) -> str:
    """A name as the checks compare it: skeleton, titles dropped, no spaces or punctuation, and
    ``i``/``l``/``1`` folded together (``Dan1el``, ``DANIEL`` and ``Daniel`` are one key)."""
    titles = title_skeletons()
    words = [word for word in re.findall(r"\w+", skeleton(join_spaced_letters(name))) if word not in titles]
    return "".join(words).replace("_", "").replace("l", "i")


def title_and_name(name: str) -> tuple[bool, str, str]:
    """Whether ``name`` carries a clinical title (``Dr.``, ``Nurse``, ``RN``...), its key without the
    title, and the key of its last word (the surname in "Nurse H. Ortiz")."""
    words = re.findall(r"\w+", skeleton(join_spaced_letters(name)))
    untitled = [word for word in words if word not in title_skeletons()]
    surname = name_key(untitled[-1]) if untitled else ""
    return len(untitled) < len(words), name_key(name), surname
