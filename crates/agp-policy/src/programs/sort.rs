//! GNU coreutils `sort`: the files it reads, its output file, its temporary directory and the
//! compression program it runs.

use super::grammar::{Grammar, OptSpec};
use super::spec::{code, f, gnu, ov, reads, v, writes};
use super::Effects;
use crate::shell::Word;

const OPTS: &[OptSpec] = &[
    f('b', "ignore-leading-blanks"),
    f('d', "dictionary-order"),
    f('f', "ignore-case"),
    f('g', "general-numeric-sort"),
    f('i', "ignore-nonprinting"),
    f('M', "month-sort"),
    f('h', "human-numeric-sort"),
    f('n', "numeric-sort"),
    f('R', "random-sort"),
    reads(' ', "random-source"),
    f('r', "reverse"),
    v(' ', "sort"),
    f('V', "version-sort"),
    v(' ', "batch-size"),
    ov('c', "check"),
    f('C', ""),
    code(
        ' ',
        "compress-program",
        "runs this program to compress temporary files",
    ),
    f(' ', "debug"),
    reads(' ', "files0-from"),
    v('k', "key"),
    f('m', "merge"),
    writes('o', "output"),
    f('s', "stable"),
    v('S', "buffer-size"),
    v('t', "field-separator"),
    // Temporary files are created in this directory.
    writes('T', "temporary-directory"),
    v(' ', "parallel"),
    f('u', "unique"),
    f('z', "zero-terminated"),
    f(' ', "help"),
    f(' ', "version"),
];

const SORT: Grammar = gnu(OPTS);

/// The sort model.
pub fn sort(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let parsed = fx.parse_args("sort", &SORT, args);
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
