//! Shorthands for the option tables of the build/test runner, git and interpreter models, and
//! the helpers they share (table-driven test words, value classification).

use super::grammar::{Arity, Effect, Grammar, OptSpec};
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

/// GNU `getopt_long` parsing: unambiguous long-option prefixes, options after operands,
/// clustered short flags.
pub(super) const fn gnu(opts: &'static [OptSpec]) -> Grammar {
    Grammar {
        opts,
        long_abbrev: true,
        permute: true,
        single_dash_long: false,
        clustering: true,
    }
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

/// Two option tables as one `&'static` table, built at compile time: `joined!(OWN, SHARED)`.
/// (The inner constants' names are not hygienic: they must not be the names passed in.)
macro_rules! joined {
    ($a:expr, $b:expr) => {{
        const JOINED_LEFT: &[$crate::programs::OptSpec] = $a;
        const JOINED_RIGHT: &[$crate::programs::OptSpec] = $b;
        const JOINED: [$crate::programs::OptSpec; JOINED_LEFT.len() + JOINED_RIGHT.len()] =
            $crate::programs::spec::concat(JOINED_LEFT, JOINED_RIGHT);
        &JOINED
    }};
}
pub(crate) use joined;

/// Two tables as one (const, so grammars stay `'static` without allocation).
pub(super) const fn concat<const N: usize>(a: &[OptSpec], b: &[OptSpec]) -> [OptSpec; N] {
    assert!(a.len() + b.len() == N);
    let mut out = [f(' ', ""); N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        out[i + j] = b[j];
        j += 1;
    }
    out
}

/// A model's table tests, kept next to the model: each `name: model => [rows]` becomes a
/// `#[test] fn name` running [`check`] over `(command line, Want)` rows, in a `tests` module
/// (so the model is named from there: `super::model`); items after a `;` are added to that
/// module as they are.
macro_rules! model_tests {
    (
        $($test:ident: $model:expr => [$($row:expr),* $(,)?]),+ $(,)?
        $(; $($extra:item)*)?
    ) => {
        #[cfg(test)]
        mod tests {
            use $crate::programs::spec::{check, Want::*};
            $(
                #[test]
                fn $test() {
                    check($model, &[$($row),*]);
                }
            )+
            $($($extra)*)?
        }
    };
}
pub(crate) use model_tests;

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

/// A row of an exact table test: input, code?, reads, writes, unknown count.
#[cfg(test)]
pub(super) type ExactRow<Input> = (
    Input,
    bool,
    &'static [&'static str],
    &'static [&'static str],
    usize,
);

/// An [`ExactRow`] over argv slices.
#[cfg(test)]
pub(super) type ArgvRow = ExactRow<&'static [&'static str]>;

/// An [`ExactRow`] over a command line.
#[cfg(test)]
pub(super) type LineRow = ExactRow<&'static str>;

/// A [`LineRow`] for tables that cover several models of one file.
#[cfg(test)]
pub(super) type ModelRow = (
    super::Model,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
    usize,
);

/// A row of a script-language table test (awk programs, sed scripts): script, code?, reads,
/// writes.
#[cfg(test)]
pub(super) type ScriptRow = (
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

/// Literal words of an argv slice (no quoting or expansion).
#[cfg(test)]
pub(super) fn argv_words(argv: &[&str]) -> Vec<Word> {
    argv.iter().map(|s| Word::literal(*s)).collect()
}

/// Literal words of a whitespace-separated line (no quoting or expansion, unlike [`words`]).
#[cfg(test)]
pub(super) fn line_words(line: &str) -> Vec<Word> {
    line.split_whitespace().map(Word::literal).collect()
}

/// The texts of words, for comparing with a row's expected paths.
#[cfg(test)]
pub(super) fn texts(v: &[Word]) -> Vec<&str> {
    v.iter().map(|w| w.text.as_str()).collect()
}

/// Asserts an invocation's effects exactly: code or not, reads and writes in order, and the
/// number of unknown options. `what` names the row in failure messages.
#[cfg(test)]
pub(super) fn assert_effects(
    fx: &super::Effects,
    what: &str,
    code: bool,
    reads: &[&str],
    writes: &[&str],
    unknown: usize,
) {
    assert_eq!(!fx.code.is_empty(), code, "{what}: {:?}", fx.code);
    assert_eq!(texts(&fx.reads), reads, "{what}");
    assert_eq!(texts(&fx.writes), writes, "{what}");
    assert_eq!(fx.unknown.len(), unknown, "{what}: {:?}", fx.unknown);
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[OptSpec] = &[f('a', "all"), v('b', "base")];
    const B: &[OptSpec] = &[f(' ', "help")];

    #[test]
    fn joined_keeps_both_tables_in_order() {
        const BOTH: &[OptSpec] = joined!(A, B);
        const NESTED: &[OptSpec] = joined!(joined!(B, A), B);
        assert_eq!(BOTH, [A[0], A[1], B[0]]);
        assert_eq!(NESTED, [B[0], A[0], A[1], B[0]]);
    }
}
