"""Count words and lines in text."""

from .core import count_lines, count_words, top_words

__all__ = ["count_lines", "count_words", "top_words"]
