//! Shorthands for the option tables of the program models, one per kind of option (`f` a
//! flag, `v` a value, `reads`/`writes` a file, `code` a program that runs, ...), the
//! option-parsing conventions they share (`gnu`, `gnu_in_order`, `exact`), small helpers, and
//! their case-file tests (`model_cases!`, `cases`).

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
    o(short, long, Arity::Flag, Effect::Plain)
}

/// A harmless option with a required value.
pub(super) const fn v(short: char, long: &'static str) -> OptSpec {
    o(short, long, Arity::Required, Effect::Plain)
}

/// A harmless option with an optional (glued) value.
pub(super) const fn ov(short: char, long: &'static str) -> OptSpec {
    o(short, long, Arity::Optional, Effect::Plain)
}

/// An option whose value is a file the program reads.
pub(super) const fn reads(short: char, long: &'static str) -> OptSpec {
    o(short, long, Arity::Required, Effect::ReadsFile)
}

/// An option whose value is a file the program writes, creates, truncates or deletes.
pub(super) const fn writes(short: char, long: &'static str) -> OptSpec {
    o(short, long, Arity::Required, Effect::WritesFile)
}

/// An option whose value is the directory the program works in.
pub(super) const fn chdir(short: char, long: &'static str) -> OptSpec {
    o(short, long, Arity::Required, Effect::ChangesDir)
}

/// An option whose value points the project's tooling at code or configuration elsewhere.
pub(super) const fn foreign(short: char, long: &'static str) -> OptSpec {
    o(short, long, Arity::Required, Effect::Foreign)
}

/// An option whose value is code, a command or a program that runs; `why` says which.
pub(super) const fn code(short: char, long: &'static str, why: &'static str) -> OptSpec {
    o(short, long, Arity::Required, Effect::RunsCode(why))
}

/// A flag that itself runs code, writes or deletes; `why` says what.
pub(super) const fn dangerous(short: char, long: &'static str, why: &'static str) -> OptSpec {
    o(short, long, Arity::Flag, Effect::Dangerous(why))
}

/// Any other option.
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

/// The program text of awk or sed given as the first operand (no `-e`/`-f`): appended to
/// `text`, or, when it is only known at run time, code. The operands after it; `None` when
/// there is none.
pub(super) fn inline_program<'a>(
    operands: &'a [Word],
    what: &str,
    text: &mut String,
    fx: &mut super::Effects,
) -> Option<&'a [Word]> {
    let (first, rest) = operands.split_first()?;
    if first.dynamic {
        fx.code(format!("{what} is only known at run time"));
    } else {
        text.push_str(&first.text);
    }
    Some(rest)
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

/// GNU `getopt_long` whose option string starts with `+`: options end at the first operand
/// (the program text or command that follows has options of its own).
pub(super) const fn gnu_in_order(opts: &'static [OptSpec]) -> Grammar {
    Grammar {
        permute: false,
        ..gnu(opts)
    }
}

/// Exact long names only (no unique-prefix matching), options anywhere, clustered short
/// flags: clap, rsync's popt, the JavaScript package managers.
pub(super) const fn exact(opts: &'static [OptSpec]) -> Grammar {
    Grammar {
        long_abbrev: false,
        ..gnu(opts)
    }
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

/// A model's case-file tests: `model_cases! { "cases/x.cases"; name: "section" => Subject, … }`
/// becomes, in a `tests` module, a `#[test] fn name` running the rows of `[section]` (see
/// `cases/README.md`), and a test that every section of the file is run by one of them, in
/// the file's order. The path is relative to the invoking file, so a missing file fails the
/// build. Items after a second `;` are added to that module as they are.
macro_rules! model_cases {
    (
        $path:literal;
        $($test:ident: $section:literal => $subject:expr),+ $(,)?
        $(; $($extra:item)*)?
    ) => {
        #[cfg(test)]
        mod tests {
            #[allow(unused_imports)]
            use $crate::programs::spec::cases::{self, Subject::*};

            const CASES: &str = include_str!($path);

            fn file() -> String {
                cases::path_beside(file!(), $path)
            }

            #[test]
            fn every_section_is_run() {
                cases::all_run(&file(), CASES, &[$($section),+]);
            }

            $(
                #[test]
                fn $test() {
                    cases::run(&file(), CASES, $section, $subject);
                }
            )+
            $($($extra)*)?
        }
    };
}
pub(crate) use model_cases;

/// The case files of the program models: parsing and running their rows.
#[cfg(test)]
pub(crate) mod cases;

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
