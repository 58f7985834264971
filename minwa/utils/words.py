"""Counts in messages: "1 class", "4 classes" (a user with one class left should not read "1 classes")."""

from __future__ import annotations

_IRREGULAR = {"class": "classes", "process": "processes", "batch": "batches"}


def noun(n: float, word: str) -> str:
    """The form of ``word`` that goes with the count ``n``: ``noun(1, "class")`` -> ``"class"``."""
    return word if n == 1 else _IRREGULAR.get(word, word + "s")


def plural(n: int, word: str) -> str:
    """``plural(1, "class")`` -> ``"1 class"``; ``plural(1234, "image")`` -> ``"1,234 images"``."""
    return f"{n:,} {noun(n, word)}"
