//! GNU make (`make`, `gmake`): options from the GNU make manual ("Options Summary") and
//! command-line variable assignments.
//!
//! A makefile is code: `--eval`, a makefile read from stdin, or one outside the project runs
//! code nobody reviewed as part of the project. Running the project's own makefile with plain
//! targets is what a `Bash(make *)` rule means and stays clean.

use super::grammar::{Grammar, OptSpec};
use super::spec::{chdir, code, f, foreign, gnu, inert_value, ov, v};
use super::{join_dir, Effects};
use crate::shell::Word;

const OPTS: &[OptSpec] = &[
    f('b', ""),
    f('m', ""),
    f('B', "always-make"),
    chdir('C', "directory"),
    f('d', ""),
    ov(' ', "debug"),
    f('e', "environment-overrides"),
    code('E', "eval", "evaluates its value as makefile text"),
    foreign('f', "file"),
    foreign(' ', "makefile"),
    f('h', "help"),
    f('i', "ignore-errors"),
    foreign('I', "include-dir"),
    ov('j', "jobs"),
    v(' ', "jobserver-auth"),
    v(' ', "jobserver-fds"),
    v(' ', "jobserver-style"),
    f('k', "keep-going"),
    ov('l', "load-average"),
    ov(' ', "max-load"),
    f('L', "check-symlink-times"),
    f('n', "just-print"),
    f(' ', "dry-run"),
    f(' ', "recon"),
    v('o', "old-file"),
    v(' ', "assume-old"),
    ov('O', "output-sync"),
    f('p', "print-data-base"),
    f('q', "question"),
    f('r', "no-builtin-rules"),
    f('R', "no-builtin-variables"),
    f('s', "silent"),
    f(' ', "quiet"),
    f(' ', "no-silent"),
    f('S', "no-keep-going"),
    f(' ', "stop"),
    f('t', "touch"),
    f(' ', "trace"),
    f('v', "version"),
    f('w', "print-directory"),
    f(' ', "no-print-directory"),
    v('W', "what-if"),
    v(' ', "new-file"),
    v(' ', "assume-new"),
    f(' ', "warn-undefined-variables"),
    ov(' ', "shuffle"),
];

const GRAMMAR: Grammar = gnu(OPTS);

/// Variables that decide how make itself runs recipes or which makefiles it reads, whatever
/// the makefile says.
fn controls_make(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with("MAKE")
        || matches!(
            name,
            "SHELL" | "MFLAGS" | "GNUMAKEFLAGS" | "VPATH" | "SUFFIXES"
        )
}

/// A makefile read from a stream: its text is only known at run time.
fn from_stream(w: &Word) -> bool {
    w.text == "-" || w.text.starts_with("/dev/") || w.text.starts_with("/proc/")
}

/// `make [OPTIONS] [VAR=VALUE…] [TARGET…]`.
///
/// A command-line assignment overrides the makefile's own, and any variable may be expanded
/// as (part of) a recipe command, so the rule for `VAR=VALUE` is: variables that steer make
/// itself (`SHELL`, `MAKE*`, `.SHELLFLAGS`, `VPATH`, any `.NAME`) are code; any other value
/// must be inert (a name, number or flag: no path, space, quote or expansion), because such a
/// value can only select a program on `PATH` or a flag, never carry a command or point at code
/// outside the project; a value with a path is tooling pointed at that path (foreign), and
/// anything else is code.
pub fn model(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let p = fx.parse_args("make", &GRAMMAR, args);
    let dir = p.find("directory").last().and_then(|o| o.value.clone());
    // make changes into `-C DIR` before reading makefiles, so relative ones are inside it.
    let mut foreign: Vec<Word> = Vec::new();
    for w in fx.foreign.drain(..) {
        if w.dynamic || from_stream(&w) {
            fx.code.push(format!(
                "make reads a makefile or include directory `{}` (code) only known at run time",
                w.text
            ));
        } else {
            foreign.push(join_dir(dir.as_ref(), &w));
        }
    }
    fx.foreign = foreign;
    for o in p.find("directory") {
        if let Some(d) = &o.value {
            fx.foreign.push(d.clone());
        }
    }
    let touch = p.has("touch");
    for w in &p.operands {
        match w.text.split_once('=') {
            Some((name, value)) if is_var_name(name.trim_end_matches([':', '+', '?', '!'])) => {
                let name = name.trim_end_matches([':', '+', '?', '!']);
                let value = Word {
                    text: value.to_string(),
                    ..w.clone()
                };
                if controls_make(name) {
                    fx.code(format!(
                        "make variable {name} changes how make runs recipes or which makefiles it reads"
                    ));
                } else if inert_value(&value) {
                } else if !value.dynamic
                    && value.text.contains('/')
                    && !value
                        .text
                        .contains(|c: char| c.is_whitespace() || "$`;|&<>()'\"\\".contains(c))
                {
                    fx.foreign.push(value);
                } else {
                    fx.code(format!(
                        "make variable {name}={} may be run as part of a recipe command",
                        value.text
                    ));
                }
            }
            _ if w.dynamic && w.text.contains('=') => fx.code(format!(
                "make assignment `{}` is only known at run time",
                w.text
            )),
            _ if touch => fx.writes.push(join_dir(dir.as_ref(), w)),
            _ => {}
        }
    }
    fx
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

super::spec::model_cases! { "cases/make.cases";
    table: "make" => Model(super::model),
}
