import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from wordcount import count_lines, count_words, top_words  # noqa: E402


class CountTest(unittest.TestCase):
    def test_words(self):
        self.assertEqual(count_words("one two  three\nfour"), 4)
        self.assertEqual(count_words(""), 0)

    def test_lines(self):
        self.assertEqual(count_lines("a\nb\n"), 2)
        self.assertEqual(count_lines("a\nb"), 2)
        self.assertEqual(count_lines(""), 0)

    def test_top_words(self):
        self.assertEqual(top_words("The cat. the dog! THE end", 1), [("the", 3)])

    def test_punctuation_is_not_a_word(self):
        self.assertEqual(top_words("... wow ... wow", 1), [("wow", 2)])


if __name__ == "__main__":
    unittest.main()
