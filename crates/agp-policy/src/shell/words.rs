//! Turning tree-sitter word nodes into the values the shell would see, when that can be known
//! statically.

use tree_sitter::Node;

/// One word of a command line after quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The value the shell would pass, when `dynamic` is false; otherwise the source text.
    pub text: String,
    /// Contains a variable expansion, a substitution, a glob or anything else only known at run
    /// time.
    pub dynamic: bool,
    /// Contains a command or process substitution (its commands are judged as parts of their
    /// own, but the word's value is unknowable).
    pub substitution: bool,
}

impl Word {
    pub fn literal(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            dynamic: false,
            substitution: false,
        }
    }
}

/// Computes the word a node stands for.
///
/// For a dynamic word, `text` is shell syntax the engine can expand again: the source text of
/// expansions, substitutions and unquoted globs, with the special characters of literal (quoted
/// or escaped) parts backslash-escaped, so a quoted `'*'` or `"$"` is never mistaken for a
/// glob or a variable.
pub fn word_of(node: Node<'_>, src: &str) -> Word {
    let mut out = Word::literal(String::new());
    let mut pattern = String::new();
    append(node, src, &mut out, &mut pattern, false);
    if out.dynamic {
        // Rare: a second pass builds the pattern form.
        let mut again = Word::literal(String::new());
        append(node, src, &mut again, &mut pattern, true);
        out.text = pattern;
    }
    out
}

/// Appends literal text to the pattern form, escaping what the engine's expansion would read
/// as syntax.
fn push_literal(pattern: &mut String, lit: &str) {
    for c in lit.chars() {
        if matches!(
            c,
            '\\' | '$' | '*' | '?' | '[' | ']' | '{' | '}' | '~' | '`' | '\'' | '"'
        ) {
            pattern.push('\\');
        }
        pattern.push(c);
    }
}

fn text<'a>(node: Node<'_>, src: &'a str) -> &'a str {
    src.get(node.byte_range()).unwrap_or("")
}

fn append(node: Node<'_>, src: &str, out: &mut Word, pattern: &mut String, want: bool) {
    match super::kind(node) {
        "word" | "command_name" if node.named_child_count() == 0 => {
            let raw = text(node, src);
            let value = unescape_bare(raw);
            if has_unquoted_glob(raw) || raw.starts_with('~') {
                // Unquoted: globs, braces and a leading tilde keep their meaning.
                if has_unquoted_glob(raw) {
                    out.dynamic = true;
                }
                if want {
                    pattern.push_str(raw);
                }
            } else {
                if want {
                    push_literal(pattern, &value);
                }
            }
            out.text.push_str(&value);
        }
        "number" if node.named_child_count() == 0 => {
            out.text.push_str(text(node, src));
            if want {
                pattern.push_str(text(node, src));
            }
        }
        "raw_string" => {
            let raw = text(node, src);
            let lit = raw
                .strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .unwrap_or(raw);
            out.text.push_str(lit);
            if want {
                push_literal(pattern, lit);
            }
        }
        "string_content" => {
            let lit = unescape_double(text(node, src));
            if want {
                push_literal(pattern, &lit);
            }
            out.text.push_str(&lit);
        }
        "string" | "translated_string" => {
            // Literal text between children (e.g. `"a"` has no string_content child in some
            // grammar versions) is recovered from the source span.
            let full = text(node, src);
            if node.named_child_count() == 0 {
                let inner = full
                    .trim_start_matches('$')
                    .strip_prefix('"')
                    .and_then(|r| r.strip_suffix('"'))
                    .unwrap_or("");
                let lit = unescape_double(inner);
                if want {
                    push_literal(pattern, &lit);
                }
                out.text.push_str(&lit);
                return;
            }
            let mut cursor = node.walk();
            for child in node.named_children(&mut cursor) {
                append(child, src, out, pattern, want);
            }
        }
        "ansi_c_string" => {
            if let Some(decoded) = decode_ansi_c(text(node, src)) {
                if want {
                    push_literal(pattern, &decoded);
                }
                out.text.push_str(&decoded);
            } else {
                out.dynamic = true;
                out.text.push_str(text(node, src));
                if want {
                    pattern.push_str(text(node, src));
                }
            }
        }
        "concatenation" | "command_name" => {
            let mut cursor = node.walk();
            let mut brace_open = false;
            for child in node.children(&mut cursor) {
                let bare_brace =
                    super::kind(child) == "word" && matches!(text(child, src), "{" | "}");
                if child.is_named() && !bare_brace {
                    append(child, src, out, pattern, want);
                } else {
                    // Unnamed tokens inside a concatenation are literal punctuation (bare
                    // glob and brace characters among them).
                    let t = text(child, src);
                    if has_unquoted_glob(t) || t == "{" || t == "}" {
                        // `{a,b}` split into tokens is still a brace expansion.
                        out.dynamic |= has_unquoted_glob(t) || (t == "}" && brace_open);
                        brace_open |= t == "{";
                        if want {
                            pattern.push_str(t);
                        }
                    } else {
                        if want {
                            push_literal(pattern, t);
                        }
                    }
                    out.text.push_str(t);
                }
            }
        }
        "command_substitution" | "process_substitution" => {
            out.dynamic = true;
            out.substitution = true;
            out.text.push_str(text(node, src));
            if want {
                pattern.push_str(text(node, src));
            }
        }
        _ => {
            // simple_expansion, expansion, arithmetic_expansion, brace_expression, array, ...
            out.dynamic = true;
            if contains_substitution(node) {
                out.substitution = true;
            }
            out.text.push_str(text(node, src));
            if want {
                pattern.push_str(text(node, src));
            }
        }
    }
}

fn contains_substitution(node: Node<'_>) -> bool {
    if matches!(
        super::kind(node),
        "command_substitution" | "process_substitution"
    ) {
        return true;
    }
    let mut cursor = node.walk();
    let found = node.named_children(&mut cursor).any(contains_substitution);
    found
}

/// Backslash removal outside quotes: `r\m` is `rm`.
fn unescape_bare(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\n') | None => {}
                Some(n) => out.push(n),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Backslash removal inside double quotes, where only `$`, `` ` ``, `"`, `\` and newline are
/// special.
fn unescape_double(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('$' | '`' | '"' | '\\') => out.push(chars.next().unwrap_or('\\')),
                Some('\n') => {
                    chars.next();
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Globs and brace expansions (`{rm,-rf,/}`, `{1..3}`) are only resolved at run time.
fn has_unquoted_glob(raw: &str) -> bool {
    let mut escaped = false;
    let mut brace_open = false;
    for c in raw.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '*' | '?' | '[' => return true,
            '{' => brace_open = true,
            '}' if brace_open => return true,
            _ => {}
        }
    }
    false
}

/// Reads up to `max` digits in `radix` from `chars` onto the value `v` (`\xHH`, `\NNN`);
/// returns the value and how many digits were read.
fn take_digits(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    radix: u32,
    max: usize,
    mut v: u32,
) -> (u32, usize) {
    let mut n = 0;
    while n < max {
        let Some(d) = chars.peek().and_then(|c| c.to_digit(radix)) else {
            break;
        };
        v = v * radix + d;
        chars.next();
        n += 1;
    }
    (v, n)
}

/// Decodes `$'...'`; `None` for escapes we do not model (then the word counts as dynamic).
fn decode_ansi_c(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix("$'")?.strip_suffix('\'')?;
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'e' | 'E' => out.push('\u{1b}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' | '\'' | '"' | '?' => out.push(e),
            'x' => {
                let (v, n) = take_digits(&mut chars, 16, 2, 0);
                if n == 0 {
                    return None;
                }
                out.push(char::from_u32(v)?);
            }
            '0'..='7' => {
                let (v, _) = take_digits(&mut chars, 8, 2, e.to_digit(8)?);
                out.push(char::from_u32(v)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes() {
        assert_eq!(unescape_bare(r"r\m"), "rm");
        assert_eq!(unescape_double(r#"a\"b\$c\d"#), r#"a"b$c\d"#);
        assert_eq!(decode_ansi_c(r"$'\x72\155'").as_deref(), Some("rm"));
        assert_eq!(decode_ansi_c(r"$'\u0041'"), None);
        // At most two hex and three octal digits; a bare `\x` is not modeled.
        assert_eq!(
            decode_ansi_c(r"$'\x41B\1010'").as_deref(),
            Some("AB\u{41}0")
        );
        assert_eq!(decode_ansi_c(r"$'\x4g'").as_deref(), Some("\u{4}g"));
        assert_eq!(decode_ansi_c(r"$'\x'"), None);
        assert!(has_unquoted_glob("/bin/r?"));
        assert!(!has_unquoted_glob(r"a\*"));
        assert!(has_unquoted_glob("{rm,-rf,/}"));
        assert!(!has_unquoted_glob(r"\{a,b}"));
    }
}
