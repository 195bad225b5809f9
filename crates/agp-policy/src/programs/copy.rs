//! GNU coreutils `cp`, `mv`, `install`, `ln`, `link`: sources are read, the destination (a
//! file, or a directory that receives each source) is written; `mv` and `ln` also change
//! their sources' names; `install --strip-program` runs a program and `-m` can set setuid.

use super::grammar::{parse, Grammar, OptSpec, Parsed};
use super::spec::{code, f, gnu, joined, ov, v};
use super::Effects;
use crate::shell::Word;

/// The backup and target-directory options cp, mv, install and ln share (coreutils'
/// backupfile and target-directory handling), with --help and --version.
const SHARED: &[OptSpec] = &[
    ov(' ', "backup"),
    f('b', ""),
    v('S', "suffix"),
    v('t', "target-directory"),
    f('T', "no-target-directory"),
    f('v', "verbose"),
    f(' ', "help"),
    f(' ', "version"),
];

const CP: &[OptSpec] = joined!(
    &[
        f('a', "archive"),
        f(' ', "attributes-only"),
        f(' ', "copy-contents"),
        f('d', ""),
        f(' ', "debug"),
        f('f', "force"),
        f('i', "interactive"),
        f('H', ""),
        f('l', "link"),
        f('L', "dereference"),
        f('n', "no-clobber"),
        f('P', "no-dereference"),
        f('p', ""),
        ov(' ', "preserve"),
        v(' ', "no-preserve"),
        f(' ', "parents"),
        f('R', "recursive"),
        f('r', ""),
        ov(' ', "reflink"),
        f(' ', "remove-destination"),
        v(' ', "sparse"),
        f(' ', "strip-trailing-slashes"),
        f('s', "symbolic-link"),
        ov(' ', "update"),
        f('u', ""),
        f(' ', "keep-directory-symlink"),
        f('x', "one-file-system"),
        f('Z', ""),
        ov(' ', "context"),
    ],
    SHARED
);

const MV: &[OptSpec] = joined!(
    &[
        f(' ', "debug"),
        f(' ', "exchange"),
        f('f', "force"),
        f('i', "interactive"),
        f('n', "no-clobber"),
        f(' ', "no-copy"),
        f(' ', "strip-trailing-slashes"),
        ov(' ', "update"),
        f('u', ""),
        f('Z', "context"),
    ],
    SHARED
);

const INSTALL: &[OptSpec] = joined!(
    &[
        f('c', ""),
        f('C', "compare"),
        f(' ', "debug"),
        f('d', "directory"),
        f('D', ""),
        v('g', "group"),
        v('m', "mode"),
        v('o', "owner"),
        f('p', "preserve-timestamps"),
        f('s', "strip"),
        code(
            ' ',
            "strip-program",
            "runs this program on every installed file"
        ),
        f(' ', "preserve-context"),
        f('Z', ""),
        ov(' ', "context"),
    ],
    SHARED
);

const LN: &[OptSpec] = joined!(
    &[
        f('d', "directory"),
        f('F', ""),
        f('f', "force"),
        f('i', "interactive"),
        f('L', "logical"),
        f('n', "no-dereference"),
        f('P', "physical"),
        f('r', "relative"),
        f('s', "symbolic"),
    ],
    SHARED
);

const LINK: &[OptSpec] = &[f(' ', "help"), f(' ', "version")];

/// The last path component, for "DIR receives SOURCE" (`cp a/b dir` writes `dir/b`).
fn base_of(w: &Word) -> &str {
    let t = w.text.trim_end_matches('/');
    t.rsplit('/').next().unwrap_or(t)
}

fn child(dir: &Word, src: &Word) -> Word {
    let sep = if dir.text.ends_with('/') { "" } else { "/" };
    Word {
        text: format!("{}{sep}{}", dir.text, base_of(src)),
        dynamic: dir.dynamic || src.dynamic,
        substitution: dir.substitution || src.substitution,
    }
}

/// Splits operands into sources and the destination, the way the coreutils do.
fn sources_and_dest(parsed: &Parsed) -> (Vec<Word>, Vec<Word>) {
    let target = parsed
        .find("target-directory")
        .filter_map(|o| o.value.clone())
        .last();
    let ops = &parsed.operands;
    let mut writes = Vec::new();
    let (sources, dest): (&[Word], Option<&Word>) = match &target {
        Some(t) => (ops.as_slice(), Some(t)),
        None if ops.len() >= 2 => (&ops[..ops.len() - 1], ops.last()),
        None => (ops.as_slice(), None),
    };
    if let Some(d) = dest {
        writes.push(d.clone());
        if !parsed.has("no-target-directory") {
            // The destination may be a directory: each source lands inside it.
            for s in sources {
                writes.push(child(d, s));
            }
        }
    }
    (sources.to_vec(), writes)
}

fn copy_like(program: &str, grammar: &Grammar, args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let parsed = fx.parse_args(program, grammar, args);
    let (sources, writes) = sources_and_dest(&parsed);
    fx.reads.extend(sources.iter().cloned());
    fx.writes.extend(writes);
    if program == "mv" {
        // Moving a file away changes it as much as writing it.
        fx.writes.extend(sources);
    }
    fx
}

/// The cp model.
pub fn cp(args: &[Word]) -> Effects {
    copy_like("cp", &gnu(CP), args)
}

/// The mv model.
pub fn mv(args: &[Word]) -> Effects {
    copy_like("mv", &gnu(MV), args)
}

/// Does an install mode set the setuid or setgid bit (`4755`, `u+s`, `g=rxs`)?
fn sets_special_bits(mode: &str) -> bool {
    if !mode.is_empty() && mode.chars().all(|c| c.is_ascii_digit()) {
        let v = u32::from_str_radix(mode, 8).unwrap_or(u32::MAX);
        return v & 0o6000 != 0;
    }
    mode.split(',').any(|clause| {
        let ops = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        ops.starts_with(['+', '=']) && ops.contains('s')
    })
}

/// The install model.
pub fn install(args: &[Word]) -> Effects {
    let g = gnu(INSTALL);
    let parsed = parse(&g, args);
    if parsed.has("directory") {
        // `install -d DIR...` creates every operand.
        let mut fx = Effects::default();
        fx.apply_generic("install", &parsed);
        fx.writes.extend(parsed.operands.iter().cloned());
        mode_check(&parsed, &mut fx);
        return fx;
    }
    let mut fx = copy_like("install", &g, args);
    mode_check(&parsed, &mut fx);
    fx
}

fn mode_check(parsed: &Parsed, fx: &mut Effects) {
    for o in parsed.find("mode") {
        match &o.value {
            Some(m) if m.dynamic => fx.code(format!(
                "install -m `{}`: a mode only known at run time may set setuid",
                m.text
            )),
            Some(m) if sets_special_bits(&m.text) => {
                fx.code(format!("install -m {} sets the setuid/setgid bit", m.text));
            }
            _ => {}
        }
    }
}

/// The ln model: the link names are written, and the targets too, since a link to a file is
/// a way to write it later.
pub fn ln(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let parsed = fx.parse_args("ln", &gnu(LN), args);
    let (sources, writes) = sources_and_dest(&parsed);
    fx.writes.extend(sources.iter().cloned());
    fx.writes.extend(writes);
    if parsed.operands.len() == 1 && !parsed.has("target-directory") {
        // `ln -s /x` creates `./x`.
        fx.writes
            .push(child(&Word::literal("."), &parsed.operands[0]));
    }
    fx
}

/// The link model (`link FILE1 FILE2`).
pub fn link(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let parsed = fx.parse_args("link", &gnu(LINK), args);
    fx.writes.extend(parsed.operands.iter().cloned());
    fx
}

super::spec::model_cases! { "cases/copy.cases";
    cp: "cp" => Model(super::cp),
    mv: "mv" => Model(super::mv),
    install: "install" => Model(super::install),
    ln: "ln" => Model(super::ln),
    link: "link" => Model(super::link);

    use super::sets_special_bits;

    #[test]
    fn special_bits() {
        assert!(!sets_special_bits("0755"));
        assert!(sets_special_bits("2755"));
        assert!(!sets_special_bits("u+x,go-w"));
    }
}
