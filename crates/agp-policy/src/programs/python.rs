//! The Python interpreter (python(1), "Command line and environment"): its options, `-c`
//! inline code, the script it runs, and `-m MODULE` dispatched to the module's own model.
//!
//! CPython reads options until `-c CMD`, `-m MOD`, `-` or the script; everything after those
//! belongs to the program. Inline code and a program read from stdin cannot be judged; a
//! script outside the project is tooling pointed elsewhere (foreign); a module agp has no
//! model of is unknown.

use super::grammar::Grammar;
use super::pytest::{self, warning_filter_runs_code};
use super::spec::{f, foreign, gnu, v};
use super::Effects;
use crate::shell::Word;

/// Is `name` a Python interpreter (`python`, `python3`, `python3.12`, `pypy3`)?
pub fn is_python(name: &str) -> bool {
    ["python", "pypy"].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
    })
}

/// How the interpreter was told what to run.
enum Mode<'a> {
    Code,
    Module(Word, &'a [Word]),
    Script(&'a Word),
    Stdin,
    /// `--version`, `--help`: nothing runs.
    Info,
}

/// Short flags that take no value.
const FLAGS: &str = "bBdEhIiOPqRsStuvVx?";

pub fn model(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let mut info = false;
    let mut mode = None;
    let mut i = 0;
    'words: while i < args.len() {
        let w = &args[i];
        i += 1;
        let t = w.text.as_str();
        if w.dynamic {
            fx.unknown.push(format!(
                "python argument `{t}` is only known at run time and could be an option"
            ));
            return fx;
        }
        if t == "--" {
            mode = Some(args.get(i).map_or(Mode::Stdin, Mode::Script));
            break;
        }
        if t == "-" {
            mode = Some(Mode::Stdin);
            break;
        }
        if let Some(long) = t.strip_prefix("--") {
            match long {
                "help" | "version" | "help-env" | "help-xoptions" | "help-all" => info = true,
                "check-hash-based-pycs" => i += 1,
                _ if long.starts_with("check-hash-based-pycs=") => {}
                _ => fx.unknown.push(format!(
                    "python option `{t}` is not in agp's model of python"
                )),
            }
            continue;
        }
        if !t.starts_with('-') || t.len() < 2 {
            mode = Some(Mode::Script(w));
            break;
        }
        for (pos, c) in t[1..].char_indices() {
            let rest = &t[1 + pos + c.len_utf8()..];
            // `-cCODE` / `-c CODE`, likewise -m, -W, -X.
            let value = |i: &mut usize| -> Option<Word> {
                if rest.is_empty() {
                    let v = args.get(*i).cloned();
                    *i += 1;
                    v
                } else {
                    Some(Word {
                        text: rest.to_string(),
                        ..w.clone()
                    })
                }
            };
            match c {
                'c' => {
                    mode = Some(Mode::Code);
                    break 'words;
                }
                'm' => {
                    if rest.is_empty() {
                        mode = Some(match args.get(i) {
                            Some(m) => Mode::Module(m.clone(), &args[i + 1..]),
                            None => Mode::Stdin,
                        });
                    } else {
                        // Glued `-mpytest`: the module name is the rest of this word.
                        let m = Word {
                            text: rest.to_string(),
                            ..w.clone()
                        };
                        mode = Some(Mode::Module(m, &args[i..]));
                    }
                    break 'words;
                }
                'W' => {
                    if let Some(v) = value(&mut i) {
                        if warning_filter_runs_code(&v) {
                            fx.code(format!(
                                "python -W {}: a dotted warning category is imported (code)",
                                v.text
                            ));
                        }
                    }
                    continue 'words;
                }
                'X' => {
                    if let Some(v) = value(&mut i) {
                        x_option(&mut fx, &v);
                    }
                    continue 'words;
                }
                'i' => fx.code("python -i reads more code from stdin after the program"),
                'h' | '?' | 'V' => info = true,
                c if FLAGS.contains(c) => {}
                other => fx.unknown.push(format!(
                    "python option `-{other}` is not in agp's model of python"
                )),
            }
        }
    }
    let mode = mode.unwrap_or(if info { Mode::Info } else { Mode::Stdin });
    match mode {
        Mode::Code => fx.code("inline code passed to python cannot be judged"),
        Mode::Stdin => fx.code("python reads its program from stdin, which cannot be judged"),
        Mode::Script(s) => fx.foreign.push(s.clone()),
        Mode::Module(m, rest) => module(&mut fx, &m, rest),
        Mode::Info => {}
    }
    fx
}

/// `-X OPTION`: implementation options; some load code or write files.
fn x_option(fx: &mut Effects, v: &Word) {
    let (name, value) = v.text.split_once('=').unwrap_or((v.text.as_str(), ""));
    match name {
        "importtime"
        | "dev"
        | "utf8"
        | "faulthandler"
        | "tracemalloc"
        | "showrefcount"
        | "int_max_str_digits"
        | "no_debug_ranges"
        | "frozen_modules"
        | "warn_default_encoding"
        | "perf"
        | "perf_jit"
        | "cpu_count"
        | "gil"
        | "context_aware_warnings"
        | "thread_inherit_context"
        | "disable_remote_debug"
            if !v.dynamic => {}
        "pycache_prefix" if !v.dynamic => fx.writes.push(Word::literal(value)),
        _ => fx.code(format!(
            "python -X {}: not an option agp knows to be inert (some load modules)",
            v.text
        )),
    }
}

/// argparse: unique prefixes, options anywhere, clustered flags, as GNU parses.
const VENV: Grammar = gnu(&[
    f(' ', "system-site-packages"),
    f(' ', "symlinks"),
    f(' ', "copies"),
    f(' ', "clear"),
    f(' ', "upgrade"),
    f(' ', "without-pip"),
    v(' ', "prompt"),
    f(' ', "upgrade-deps"),
    f(' ', "without-scm-ignore-files"),
    f('h', "help"),
]);

const JSON_TOOL: Grammar = gnu(&[
    f(' ', "sort-keys"),
    f(' ', "no-ensure-ascii"),
    f(' ', "json-lines"),
    v(' ', "indent"),
    f(' ', "tab"),
    f(' ', "no-indent"),
    f(' ', "compact"),
    f('h', "help"),
]);

const UNITTEST: Grammar = gnu(&[
    f('v', "verbose"),
    f('q', "quiet"),
    f(' ', "locals"),
    v(' ', "durations"),
    f('f', "failfast"),
    f('c', "catch"),
    f('b', "buffer"),
    v('k', ""),
    foreign('s', "start-directory"),
    v('p', "pattern"),
    foreign('t', "top-level-directory"),
    f('h', "help"),
]);

/// `python -m MODULE ARGS…`.
fn module(fx: &mut Effects, m: &Word, rest: &[Word]) {
    if m.dynamic {
        fx.code(format!(
            "python -m {}: the module is only known at run time",
            m.text
        ));
        return;
    }
    let parsed =
        |fx: &mut Effects, g: &Grammar| fx.parse_args(&format!("python -m {}", m.text), g, rest);
    match m.text.as_str() {
        "pytest" | "py.test" => {
            let p = pytest::model(rest);
            merge(fx, p);
        }
        "pip" | "pip3" => match rest.first().map(|w| w.text.as_str()) {
            // Installs are judged by the supply-chain guard.
            Some(
                "install" | "list" | "show" | "freeze" | "check" | "--version" | "-V" | "help"
                | "--help",
            ) => {}
            other => fx.unknown.push(format!(
                "python -m pip {} is not in agp's model of pip",
                other.unwrap_or("")
            )),
        },
        "venv" => {
            let p = parsed(fx, &VENV);
            fx.writes.extend(p.operands);
        }
        "json.tool" => {
            let p = parsed(fx, &JSON_TOOL);
            fx.reads.extend(p.operands.first().cloned());
            fx.writes.extend(p.operands.get(1).cloned());
        }
        "unittest" => {
            let p = parsed(fx, &UNITTEST);
            // Dotted module names import from the project; paths may be anywhere.
            for w in p.operands.iter().filter(|w| w.text != "discover") {
                if w.dynamic
                    || w.text.contains('/')
                    || crate::paths::ends_with_ignore_case(&w.text, ".py")
                {
                    fx.foreign.push(w.clone());
                }
            }
        }
        "timeit" | "trace" | "pdb" | "cProfile" | "profile" | "runpy" | "code" => fx.code(format!(
            "python -m {} runs code or a program it is given",
            m.text
        )),
        "site" | "sysconfig" | "platform" | "this" | "ensurepip.__init__" if rest.is_empty() => {}
        other => fx.unknown.push(format!(
            "python -m {other} runs a module agp has no model of"
        )),
    }
}

fn merge(fx: &mut Effects, other: Effects) {
    fx.code.extend(other.code);
    fx.reads.extend(other.reads);
    fx.writes.extend(other.writes);
    fx.unknown.extend(other.unknown);
    fx.foreign.extend(other.foreign);
    fx.runs.extend(other.runs);
}

super::spec::model_cases! { "cases/python.cases";
    table: "python" => Model(super::model);
    use super::is_python;

    #[test]
    fn names() {
        assert!(is_python("python3.12") && is_python("python") && is_python("pypy3"));
        assert!(!is_python("python-config") && !is_python("pythonx"));
    }
}
