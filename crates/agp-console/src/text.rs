//! Agent-supplied text as the pages show it.
//!
//! maud escapes every interpolated string for HTML (no markup can form); on top of that,
//! control and invisible formatting characters (bidi overrides as in "Trojan Source",
//! zero-width characters, newlines in one-line fields) are made visible with the same rule the
//! terminal approver uses, so a reviewer reads what the agent sent, not what it wanted shown.

/// Longest text shown in one cell; the rest is cut (the journal keeps it whole).
const MAX_SHOWN: usize = 4000;

/// `text` with unsafe characters made visible and cut to a readable length.
pub fn shown(text: &str) -> String {
    let visible = agp_channels::sanitize::escape(text);
    if visible.chars().count() <= MAX_SHOWN {
        return visible.into_owned();
    }
    let mut out: String = visible.chars().take(MAX_SHOWN).collect();
    out.push_str(" [… cut]");
    out
}

/// [`shown`] per line, keeping the line breaks (a file shown in a `<pre>`).
pub fn shown_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| agp_channels::sanitize::escape(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_controls_are_made_visible() {
        assert_eq!(shown("a\u{202e}b\nc\u{1b}[2J"), "a\\u{202e}b\\nc\\e[2J");
        assert_eq!(shown("plain"), "plain");
    }

    #[test]
    fn long_text_is_cut() {
        let s = "x".repeat(MAX_SHOWN + 10);
        assert!(shown(&s).ends_with("[… cut]"));
    }
}
