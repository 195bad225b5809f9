//! Shorthands for the option tables of the build/test runner, git and interpreter models, and
//! the helpers they share (table-driven test words, value classification).

use super::grammar::{Arity, Effect, OptSpec};
use crate::shell::Word;

const fn opt_char(c: char) -> Option<char> {
    if c == ' ' {
        None
    } else {
        Some(c)
    }
}

const fn opt_long(l: &'static str) -> Option<&'static str> {
    if l.is_empty() {
        None
    } else {
        Some(l)
    }
}

/// A harmless flag (`' '` / `""` when the short or long form does not exist).
pub(super) const fn f(short: char, long: &'static str) -> OptSpec {
    OptSpec::new(opt_char(short), opt_long(long), Arity::Flag, Effect::Plain)
}

/// A harmless option with a required value.
pub(super) const fn v(short: char, long: &'static str) -> OptSpec {
    OptSpec::new(
        opt_char(short),
        opt_long(long),
        Arity::Required,
        Effect::Plain,
    )
}

/// A harmless option with an optional (glued) value.
pub(super) const fn ov(short: char, long: &'static str) -> OptSpec {
    OptSpec::new(
        opt_char(short),
        opt_long(long),
        Arity::Optional,
        Effect::Plain,
    )
}

/// Any option.
pub(super) const fn o(short: char, long: &'static str, arity: Arity, effect: Effect) -> OptSpec {
    OptSpec::new(opt_char(short), opt_long(long), arity, effect)
}

/// A value that is only a name, a number or a flag word: no path, no spaces, no shell or
/// expansion syntax. Such a value cannot name a program outside `PATH` or carry a command.
pub(super) fn inert_value(w: &Word) -> bool {
    !w.dynamic
        && w.text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-' | ',' | '+' | ':' | '@' | '%' | '=')
        })
}

/// Words of a test command line: whitespace-separated, `'…'` quoting, `$` makes a word dynamic.
#[cfg(test)]
pub(super) fn words(line: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut dynamic = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' if !quoted => {
                if in_word {
                    out.push(Word {
                        text: std::mem::take(&mut cur),
                        dynamic,
                        substitution: false,
                    });
                }
                in_word = false;
                dynamic = false;
            }
            _ => {
                if c == '$' && !quoted {
                    dynamic = true;
                }
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(Word {
            text: cur,
            dynamic,
            substitution: false,
        });
    }
    out
}

/// One row of a model's table test: what the command line must (and must not) produce.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// Nothing: no code, unknown, reads, writes or foreign paths.
    Clean,
    Code,
    Unknown,
    /// A read of this path.
    Reads(&'static str),
    /// A write of this path.
    Writes(&'static str),
    /// Tooling pointed at this path.
    Foreign(&'static str),
}

/// Runs a model over `(command line without the program, expectation)` rows.
#[cfg(test)]
pub(super) fn check(model: super::Model, rows: &[(&str, Want)]) {
    for (line, want) in rows {
        let fx = model(&words(line));
        let texts = |v: &[Word]| v.iter().map(|w| w.text.clone()).collect::<Vec<_>>();
        let ok = match want {
            Want::Clean => {
                fx.code.is_empty()
                    && fx.unknown.is_empty()
                    && fx.reads.is_empty()
                    && fx.writes.is_empty()
                    && fx.foreign.is_empty()
            }
            Want::Code => !fx.code.is_empty(),
            Want::Unknown => !fx.unknown.is_empty() && fx.code.is_empty(),
            Want::Reads(p) => texts(&fx.reads).iter().any(|r| r == p),
            Want::Writes(p) => texts(&fx.writes).iter().any(|r| r == p),
            Want::Foreign(p) => texts(&fx.foreign).iter().any(|r| r == p),
        };
        assert!(ok, "`{line}`: wanted {want:?}, got {fx:?}");
    }
}
