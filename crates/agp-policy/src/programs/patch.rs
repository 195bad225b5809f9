//! GNU patch 2.7: the patch it reads, and the files it writes, which the patch itself names.
//! agp does not read the patch, so applying one is a write of files it cannot see unless the
//! file to patch or the output is given on the command line.

use super::grammar::{Grammar, OptSpec};
use super::spec::{chdir, dangerous, f, gnu, ov, reads, v, writes};
use super::{join_dir, Effects};
use crate::shell::Word;

const OPTS: &[OptSpec] = &[
    f('b', "backup"),
    // Backups are written under this prefix (`-B /root/.ssh/`).
    writes('B', "prefix"),
    f(' ', "backup-if-mismatch"),
    f(' ', "no-backup-if-mismatch"),
    f('c', "context"),
    chdir('d', "directory"),
    v('D', "ifdef"),
    f(' ', "dry-run"),
    dangerous(
        'e',
        "ed",
        "feeds the patch to ed, which can run shell commands",
    ),
    f('E', "remove-empty-files"),
    f('f', "force"),
    v('F', "fuzz"),
    v('g', "get"),
    f(' ', "help"),
    reads('i', "input"),
    f('l', "ignore-whitespace"),
    ov(' ', "merge"),
    f('n', "normal"),
    f('N', "forward"),
    v('o', "output"),
    v('p', "strip"),
    f(' ', "posix"),
    v(' ', "quoting-style"),
    writes('r', "reject-file"),
    v(' ', "reject-format"),
    v(' ', "read-only"),
    f('R', "reverse"),
    f('s', "silent"),
    f(' ', "quiet"),
    f('t', "batch"),
    f('T', "set-time"),
    f('u', "unified"),
    f('v', "version"),
    v('V', "version-control"),
    f(' ', "verbose"),
    v('x', "debug"),
    v('Y', "basename-prefix"),
    v('z', "suffix"),
    f('Z', "set-utc"),
    f(' ', "follow-symlinks"),
];

const PATCH: Grammar = gnu(OPTS);

/// The patch model.
pub fn patch(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let parsed = fx.parse_args("patch", &PATCH, args);
    let dir = parsed
        .find("directory")
        .filter_map(|o| o.value.clone())
        .last();
    let dry = parsed.has("dry-run");
    for o in parsed.find("get") {
        // -g N (N != 0) checks files out of RCS, ClearCase, Perforce or SCCS: it runs them.
        if o.value.as_ref().is_some_and(|v| v.dynamic || v.text != "0") {
            fx.code("patch -g checks files out with RCS/SCCS/Perforce commands");
        }
    }
    let mut ops = parsed.operands.iter();
    let original = ops.next();
    if let Some(p) = ops.next() {
        fx.reads.push(join_dir(dir.as_ref(), p));
    }
    let outputs: Vec<Word> = parsed
        .find("output")
        .filter_map(|o| o.value.clone())
        .collect();
    if dry {
        if let Some(f) = original {
            fx.reads.push(join_dir(dir.as_ref(), f));
        }
        fx.writes.clear();
        return fx;
    }
    if !outputs.is_empty() {
        for o in outputs {
            if o.text != "-" || o.dynamic {
                fx.writes.push(join_dir(dir.as_ref(), &o));
            }
        }
        if let Some(f) = original {
            fx.reads.push(join_dir(dir.as_ref(), f));
        }
    } else if let Some(f) = original {
        fx.reads.push(join_dir(dir.as_ref(), f));
        fx.writes.push(join_dir(dir.as_ref(), f));
    } else {
        let target = dir.unwrap_or_else(|| Word::literal("."));
        fx.code(format!(
            "patch writes the files the patch names, which agp does not read; they may be any file under `{}`",
            target.text
        ));
        fx.writes.push(target);
    }
    fx
}

super::spec::model_cases! { "cases/patch.cases";
    table: "patch" => Model(super::patch),
}
