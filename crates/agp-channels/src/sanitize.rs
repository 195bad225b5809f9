//! Making agent-supplied text safe to print on a terminal.
//!
//! Everything an agent controls (tool name, input, even the policy reason, which may quote the
//! input) goes through [`escape`] before it reaches the terminal, so the agent cannot move the
//! cursor, clear the screen, retitle the window or otherwise repaint the approval prompt.
//!
//! Escaping every control character (rather than stripping known ANSI sequences, as crates like
//! `strip-ansi-escapes` do) is deliberate: once ESC, CSI (U+009B) and the other C0/C1 controls are
//! made visible, no escape sequence can form at all, whatever a terminal would have parsed. The
//! rule is short enough to audit, and it also shows the approver that the agent tried.

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for characters that must never reach the terminal raw: C0 and C1 controls, DEL, and the
/// invisible formatting characters that can make text read differently from what it is
/// (bidirectional overrides and isolates as in "Trojan Source", zero-width characters, the BOM).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}'               // Arabic letter mark
            | '\u{200b}'..='\u{200f}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{feff}'              // BOM / zero-width no-break space
        )
}

/// `text` with every unsafe character replaced by a visible escape (`\e`, `\n`, `\u{202e}`, ...).
/// Text without such characters is returned unchanged and unallocated.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !is_unsafe(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_untouched() {
        assert!(matches!(escape("ls -la ~/src | wc -l"), Cow::Borrowed(_)));
        assert_eq!(escape("café ✓ 日本"), "café ✓ 日本");
    }

    #[test]
    fn ansi_sequences_cannot_form() {
        let evil = "ok\u{1b}[2J\u{1b}[1;1HAllowed? y\u{1b}]0;title\u{7}\u{9b}31m";
        let shown = escape(evil);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "ok\\e[2J\\e[1;1HAllowed? y\\e]0;title\\u{7}\\u{9b}31m"
        );
    }

    #[test]
    fn line_breaks_and_carriage_returns_are_visible() {
        assert_eq!(escape("a\r\nb\u{7f}"), "a\\r\\nb\\u{7f}");
        assert_eq!(escape("x\u{2028}y"), "x\\u{2028}y");
    }

    #[test]
    fn bidi_and_invisible_characters_are_visible() {
        let trojan = "rm -rf /tmp/x \u{202e}txt.exe\u{202c} \u{200b}";
        let shown = escape(trojan);
        assert!(!shown.chars().any(is_unsafe));
        assert!(shown.contains("\\u{202e}") && shown.contains("\\u{200b}"));
    }
}
