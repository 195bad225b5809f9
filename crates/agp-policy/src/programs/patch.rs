//! GNU patch 2.7: the patch it reads, and the files it writes, which the patch itself names.
//! agp does not read the patch, so applying one is a write of files it cannot see unless the
//! file to patch or the output is given on the command line.

use super::grammar::{parse, Arity::*, Effect::*, Grammar, OptSpec};
use super::spec::gnu;
use super::{join_dir, Effects};
use crate::shell::Word;

const OPTS: &[OptSpec] = &[
    OptSpec::new(Some('b'), Some("backup"), Flag, Plain),
    // Backups are written under this prefix (`-B /root/.ssh/`).
    OptSpec::new(Some('B'), Some("prefix"), Required, WritesFile),
    OptSpec::new(None, Some("backup-if-mismatch"), Flag, Plain),
    OptSpec::new(None, Some("no-backup-if-mismatch"), Flag, Plain),
    OptSpec::new(Some('c'), Some("context"), Flag, Plain),
    OptSpec::new(Some('d'), Some("directory"), Required, ChangesDir),
    OptSpec::new(Some('D'), Some("ifdef"), Required, Plain),
    OptSpec::new(None, Some("dry-run"), Flag, Plain),
    OptSpec::new(
        Some('e'),
        Some("ed"),
        Flag,
        Dangerous("feeds the patch to ed, which can run shell commands"),
    ),
    OptSpec::new(Some('E'), Some("remove-empty-files"), Flag, Plain),
    OptSpec::new(Some('f'), Some("force"), Flag, Plain),
    OptSpec::new(Some('F'), Some("fuzz"), Required, Plain),
    OptSpec::new(Some('g'), Some("get"), Required, Plain),
    OptSpec::new(None, Some("help"), Flag, Plain),
    OptSpec::new(Some('i'), Some("input"), Required, ReadsFile),
    OptSpec::new(Some('l'), Some("ignore-whitespace"), Flag, Plain),
    OptSpec::new(None, Some("merge"), Optional, Plain),
    OptSpec::new(Some('n'), Some("normal"), Flag, Plain),
    OptSpec::new(Some('N'), Some("forward"), Flag, Plain),
    OptSpec::new(Some('o'), Some("output"), Required, Plain),
    OptSpec::new(Some('p'), Some("strip"), Required, Plain),
    OptSpec::new(None, Some("posix"), Flag, Plain),
    OptSpec::new(None, Some("quoting-style"), Required, Plain),
    OptSpec::new(Some('r'), Some("reject-file"), Required, WritesFile),
    OptSpec::new(None, Some("reject-format"), Required, Plain),
    OptSpec::new(None, Some("read-only"), Required, Plain),
    OptSpec::new(Some('R'), Some("reverse"), Flag, Plain),
    OptSpec::new(Some('s'), Some("silent"), Flag, Plain),
    OptSpec::new(None, Some("quiet"), Flag, Plain),
    OptSpec::new(Some('t'), Some("batch"), Flag, Plain),
    OptSpec::new(Some('T'), Some("set-time"), Flag, Plain),
    OptSpec::new(Some('u'), Some("unified"), Flag, Plain),
    OptSpec::new(Some('v'), Some("version"), Flag, Plain),
    OptSpec::new(Some('V'), Some("version-control"), Required, Plain),
    OptSpec::new(None, Some("verbose"), Flag, Plain),
    OptSpec::new(Some('x'), Some("debug"), Required, Plain),
    OptSpec::new(Some('Y'), Some("basename-prefix"), Required, Plain),
    OptSpec::new(Some('z'), Some("suffix"), Required, Plain),
    OptSpec::new(Some('Z'), Some("set-utc"), Flag, Plain),
    OptSpec::new(None, Some("follow-symlinks"), Flag, Plain),
];

const PATCH: Grammar = gnu(OPTS);

/// The patch model.
pub fn patch(args: &[Word]) -> Effects {
    let parsed = parse(&PATCH, args);
    let mut fx = Effects::default();
    fx.apply_generic("patch", &parsed);
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
