"""The counting functions."""

from collections import Counter


def count_words(text: str) -> int:
    """Number of whitespace-separated words in ``text``."""
    return len(text.split())


def count_lines(text: str) -> int:
    """Number of lines in ``text`` (a final line without a newline counts)."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def top_words(text: str, n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` most frequent words, case-insensitively, most frequent first."""
    words = [w.strip(".,;:!?\"'()").lower() for w in text.split()]
    # Punctuation-only tokens ("...", "--") strip to empty strings.
    return Counter(words).most_common(n)
