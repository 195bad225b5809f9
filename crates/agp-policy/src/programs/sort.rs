//! GNU coreutils `sort`: the files it reads, its output file, its temporary directory and the
//! compression program it runs.

use super::grammar::{parse, Arity::*, Effect::*, Grammar, OptSpec};
use super::spec::gnu;
use super::Effects;
use crate::shell::Word;

const OPTS: &[OptSpec] = &[
    OptSpec::new(Some('b'), Some("ignore-leading-blanks"), Flag, Plain),
    OptSpec::new(Some('d'), Some("dictionary-order"), Flag, Plain),
    OptSpec::new(Some('f'), Some("ignore-case"), Flag, Plain),
    OptSpec::new(Some('g'), Some("general-numeric-sort"), Flag, Plain),
    OptSpec::new(Some('i'), Some("ignore-nonprinting"), Flag, Plain),
    OptSpec::new(Some('M'), Some("month-sort"), Flag, Plain),
    OptSpec::new(Some('h'), Some("human-numeric-sort"), Flag, Plain),
    OptSpec::new(Some('n'), Some("numeric-sort"), Flag, Plain),
    OptSpec::new(Some('R'), Some("random-sort"), Flag, Plain),
    OptSpec::new(None, Some("random-source"), Required, ReadsFile),
    OptSpec::new(Some('r'), Some("reverse"), Flag, Plain),
    OptSpec::new(None, Some("sort"), Required, Plain),
    OptSpec::new(Some('V'), Some("version-sort"), Flag, Plain),
    OptSpec::new(None, Some("batch-size"), Required, Plain),
    OptSpec::new(Some('c'), Some("check"), Optional, Plain),
    OptSpec::new(Some('C'), None, Flag, Plain),
    OptSpec::new(
        None,
        Some("compress-program"),
        Required,
        RunsCode("runs this program to compress temporary files"),
    ),
    OptSpec::new(None, Some("debug"), Flag, Plain),
    OptSpec::new(None, Some("files0-from"), Required, ReadsFile),
    OptSpec::new(Some('k'), Some("key"), Required, Plain),
    OptSpec::new(Some('m'), Some("merge"), Flag, Plain),
    OptSpec::new(Some('o'), Some("output"), Required, WritesFile),
    OptSpec::new(Some('s'), Some("stable"), Flag, Plain),
    OptSpec::new(Some('S'), Some("buffer-size"), Required, Plain),
    OptSpec::new(Some('t'), Some("field-separator"), Required, Plain),
    // Temporary files are created in this directory.
    OptSpec::new(Some('T'), Some("temporary-directory"), Required, WritesFile),
    OptSpec::new(None, Some("parallel"), Required, Plain),
    OptSpec::new(Some('u'), Some("unique"), Flag, Plain),
    OptSpec::new(Some('z'), Some("zero-terminated"), Flag, Plain),
    OptSpec::new(None, Some("help"), Flag, Plain),
    OptSpec::new(None, Some("version"), Flag, Plain),
];

const SORT: Grammar = gnu(OPTS);

/// The sort model.
pub fn sort(args: &[Word]) -> Effects {
    let parsed = parse(&SORT, args);
    let mut fx = Effects::default();
    fx.apply_generic("sort", &parsed);
    if parsed.has("files0-from") {
        fx.code("sort reads the names of its input files from a file agp cannot see");
    }
    for w in &parsed.operands {
        if w.text != "-" || w.dynamic {
            fx.reads.push(w.clone());
        }
    }
    fx
}

super::spec::model_cases! { "cases/sort.cases";
    table: "sort" => Model(super::sort),
}
