"""The characters of the glyphs source: the candidate classes, in their canonical order, and the
characters left out because another class already has their shape.

Every image is fitted to its box (its bounding box scaled to fill the image, see
:mod:`geoharmony.data.glyphs`), and the SimCLR views flip images horizontally half of the time
(:class:`~geoharmony.data.augment.BatchedSimCLRAugment`, ``flip_p=0.5``, not configurable). So
two characters are one class for this benchmark when their shapes agree *up to scale* (c and C)
or *up to a mirror image* (b and d), and across scripts (Latin A, Greek Alpha, Cyrillic A are
one drawing in most typefaces). Each such group keeps at most one character; :data:`DROPPED`
lists the others with the reason. Diacritic copies (É, Й, Ї...) differ from their base letter
by a mark of a few pixels at 32x32 and are not candidates at all.

A candidate becomes a class only where enough typeface families draw it
(:func:`geoharmony.data.glyphs.load_glyphs` counts them); docs/glyphs.md lists the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CANDIDATES", "DROPPED", "Dropped", "GlyphClass", "candidate", "dropped_characters"]


@dataclass(frozen=True)
class GlyphClass:
    """One candidate class: a single character (its name) and its script."""

    char: str
    script: str  # latin | digit | latin-1 | greek | cyrillic | symbol

    @property
    def codepoint(self) -> str:
        return f"U+{ord(self.char):04X}"


@dataclass(frozen=True)
class Dropped:
    """Characters that are no class of their own: ``chars`` look like ``kept`` (None: like
    nothing kept, dropped outright) for the reason ``why``."""

    kept: str | None
    chars: str
    why: str


def _classes(script: str, chars: str) -> list[GlyphClass]:
    return [GlyphClass(c, script) for c in chars]


# The canonical class order (labels are positions in it, after the classes too few families
# draw are removed): Latin capitals, Latin small letters, digits, Latin-1 letters, Greek
# capitals and small letters, Cyrillic, symbols.
CANDIDATES: tuple[GlyphClass, ...] = tuple(
    _classes("latin", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + _classes("latin", "abefghijkmnqrty")
    + _classes("digit", "23456789")
    + _classes("latin-1", "ÆæŒœØÞ")
    + _classes("greek", "ΓΔΘΛΞΠΣΦΨΩ")
    + _classes("greek", "αβγδζηλμξσςω")
    + _classes("cyrillic", "БДЖЦЧШЩЪЫЭЮЉЊЋЏ")
    + _classes("symbol", "!#$%&([{*+<=?@~:;§¶©®€£¥¢±¿÷")
)

# Each group: the class that has the shape (None: no class keeps it), the characters dropped,
# and why. Latin capital forms are kept over lower case and over other scripts, because every
# text font draws them.
DROPPED: tuple[Dropped, ...] = (
    # Same shape up to scale: the small letter is its capital drawn at x-height.
    Dropped("C", "cСсϹϲ", "c is C at x-height; Cyrillic Es and Greek lunate sigma are C"),
    Dropped("O", "o0ОоΟο", "o, zero, Cyrillic O and Greek Omicron are the same oval"),
    Dropped("S", "sЅѕ", "s is S at x-height; Cyrillic Dze is S"),
    Dropped("V", "vνѴѵ", "v is V at x-height; Greek nu and Cyrillic izhitsa are v"),
    Dropped("W", "wѠ", "w is W at x-height"),
    Dropped("X", "xХхΧχ×", "x, Cyrillic Kha, Greek Chi and the times sign are X"),
    Dropped("Z", "zΖ", "z is Z at x-height; Greek Zeta is Z"),
    Dropped("I", "lІ1|Ιιǀӏ", "l, I, 1, the bar, Greek Iota and Cyrillic I: one vertical stroke"),
    Dropped("P", "pРрΡρ", "p is P with a descender; Cyrillic Er and Greek Rho are P or p"),
    Dropped("U", "u", "u is U at x-height (its stem spur is a few pixels)"),
    Dropped("K", "КкΚκ", "Cyrillic Ka and Greek Kappa are K (k, with its tall stem, stays)"),
    # The same letter in another script.
    Dropped("A", "АΑ", "Cyrillic A and Greek Alpha are A"),
    Dropped("a", "а", "Cyrillic a is a"),
    Dropped("B", "ВвΒ", "Cyrillic Ve and Greek Beta are B (Cyrillic ve is B at x-height)"),
    Dropped("E", "ЕΕ", "Cyrillic Ie and Greek Epsilon are E"),
    Dropped("e", "е", "Cyrillic ie is e"),
    Dropped("H", "НнΗ", "Cyrillic En and Greek Eta are H (Cyrillic en is H at x-height)"),
    Dropped("M", "МмΜ", "Cyrillic Em and Greek Mu are M (Cyrillic em is M at x-height)"),
    Dropped("N", "Ν", "Greek Nu is N"),
    Dropped("T", "ТтΤτ", "Cyrillic Te and Greek Tau are T or T at x-height"),
    Dropped("Y", "ΥυҮ", "Greek Upsilon and Cyrillic Ue are Y (upsilon is u or v)"),
    Dropped("J", "Ј", "Cyrillic Je is J"),
    Dropped("j", "ј", "Cyrillic je is j"),
    Dropped("i", "іı", "Cyrillic i is i; dotless i is the stroke of l"),
    Dropped("Γ", "ГгҐґ", "Cyrillic Ghe (with or without upturn) is Gamma"),
    Dropped("Π", "Пп", "Cyrillic Pe is Pi"),
    Dropped("Φ", "Ффφ", "Cyrillic Ef and Greek phi are Phi up to scale"),
    Dropped("Λ", "Лл", "Cyrillic El is Lambda in most typefaces"),
    Dropped("Θ", "θϴѲѳ", "small theta and Cyrillic Fita are Theta up to scale"),
    Dropped("Ψ", "ψѰ", "small psi is Psi up to scale"),
    Dropped("Д", "д", "Cyrillic de is De at x-height"),
    Dropped("Ж", "ж", "Cyrillic zhe is Zhe at x-height"),
    Dropped("Ц", "ц", "Cyrillic tse is Tse at x-height"),
    Dropped("Ч", "ч", "Cyrillic che is Che at x-height"),
    Dropped("Ш", "ш", "Cyrillic sha is Sha at x-height"),
    Dropped("Щ", "щ", "Cyrillic shcha is Shcha at x-height"),
    Dropped("Ъ", "ъ", "Cyrillic hard sign, small, is the capital at x-height"),
    Dropped("Ы", "ы", "Cyrillic yeru, small, is the capital at x-height"),
    Dropped("Э", "эЄє", "Cyrillic e is E-reversed at x-height; Ukrainian Ie is it mirrored"),
    Dropped("Ю", "ю", "Cyrillic yu is Yu at x-height"),
    Dropped("Љ", "љ", "Cyrillic lje is Lje at x-height"),
    Dropped("Њ", "њ", "Cyrillic nje is Nje at x-height"),
    Dropped("Џ", "џ", "Cyrillic dzhe is Dzhe at x-height"),
    Dropped("Ћ", "Ђ", "Cyrillic Dje is Tshe with a hooked leg, a few pixels apart"),
    Dropped("6", "б", "Cyrillic be is drawn as the digit 6"),
    Dropped("3", "ЗзεϵӠ", "Cyrillic Ze is 3; Greek epsilon is 3 reversed (a mirror image)"),
    Dropped("Ø", "ø", "o slash is O slash up to scale"),
    Dropped("β", "ß", "sharp s is beta without its descender"),
    Dropped("δ", "ð", "eth is delta with a bar of a few pixels"),
    Dropped("Þ", "þ", "small thorn is Thorn up to scale"),
    # Mirror images: the views flip, so one of each pair.
    Dropped("b", "dЬь", "d is b mirrored; Cyrillic soft sign is b"),
    Dropped("N", "Ии", "Cyrillic I is N mirrored"),
    Dropped("R", "Яя", "Cyrillic Ya is R mirrored"),
    Dropped("(", ")", ") is ( mirrored"),
    Dropped("[", "]", "] is [ mirrored"),
    Dropped("{", "}", "} is { mirrored"),
    Dropped("<", ">", "> is < mirrored"),
    # No shape of their own once fitted to the box, or one that only rotation tells apart.
    Dropped(None, ".,'`·•°\"", "a dot, a tick or a ring: a blob once scaled up"),
    Dropped(None, "-_–—", "a bar: a filled rectangle once scaled up"),
    Dropped(None, "/\\", "a slanted stroke: I rotated by the jitter"),
    Dropped(None, "^", "the caret is Lambda up to scale"),
)


def dropped_characters() -> set[str]:
    """Every character some group drops (never a class)."""
    return {c for group in DROPPED for c in group.chars}


def candidate(char: str) -> GlyphClass:
    """The candidate class of ``char``.

    Raises:
        ValueError: ``char`` is no candidate (the message says which group dropped it).
    """
    for c in CANDIDATES:
        if c.char == char:
            return c
    for group in DROPPED:
        if char in group.chars:
            raise ValueError(f"{char!r} is no glyph class: {group.why}")
    raise ValueError(f"{char!r} is no glyph class (not among the {len(CANDIDATES)} candidates)")
