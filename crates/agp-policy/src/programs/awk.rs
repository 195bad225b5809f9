//! `awk` (gawk 5, mawk, BWK awk, busybox): options, and the program text, which can run
//! commands (`system()`, pipes, indirect calls), read and write files (`getline <`, `print >`),
//! read the environment, and load code (`@include`, `@load`, `-f`, `-i`, `-l`).

use super::grammar::{parse, Arity::*, Effect::*, Grammar, OptSpec};
use super::spec::{code, f, gnu_in_order, inline_program, o, ov, v};
use super::Effects;
use crate::shell::Word;

const OPTS: &[OptSpec] = &[
    v('f', "file"),
    v('F', "field-separator"),
    v('v', "assign"),
    f('b', "characters-as-bytes"),
    f('c', "traditional"),
    f('C', "copyright"),
    ov('d', "dump-variables"),
    o(
        'D',
        "debug",
        Optional,
        RunsCode("starts the debugger, which runs commands from its input"),
    ),
    v('e', "source"),
    v('E', "exec"),
    f('g', "gen-pot"),
    f('h', "help"),
    v('i', "include"),
    f('I', "trace"),
    f('k', "csv"),
    code('l', "load", "loads a compiled extension"),
    ov('L', "lint"),
    f('M', "bignum"),
    f('N', "use-lc-numeric"),
    f('n', "non-decimal-data"),
    ov('o', "pretty-print"),
    f('O', "optimize"),
    ov('p', "profile"),
    f('P', "posix"),
    f('r', "re-interval"),
    f('s', "no-optimize"),
    f('S', "sandbox"),
    f('t', "lint-old"),
    f('V', "version"),
    // POSIX spelling of implementation options (`-W sandbox`, mawk's `-W exec file`).
    v('W', ""),
];

/// gawk's option string starts with `+`: options end at the program text.
const AWK: Grammar = gnu_in_order(OPTS);

/// `-W` values that change nothing agp judges.
const HARMLESS_W: &[&str] = &[
    "version",
    "v",
    "interactive",
    "posix_space",
    "posix",
    "usage",
    "help",
    "traditional",
    "compat",
    "lint",
    "lint-old",
    "re-interval",
    "characters-as-bytes",
    "copyright",
    "non-decimal-data",
    "use-lc-numeric",
    "optimize",
    "no-optimize",
    "bignum",
    "csv",
    "dump",
];

/// The awk model.
pub fn awk(args: &[Word]) -> Effects {
    let parsed = parse(&AWK, args);
    let mut fx = Effects::default();
    fx.unknown_options("awk", &parsed);
    let mut sandbox = parsed.has("sandbox");
    let mut in_place = false;
    let mut program = String::new();
    let mut explicit = false;
    for o in &parsed.opts {
        let v = o.value.as_ref();
        let text = v.map_or("", |w| w.text.as_str());
        match o.spec.long {
            Some("file" | "exec") => {
                explicit = true;
                fx.code(format!(
                    "awk runs a program from `{text}` that agp cannot see"
                ));
            }
            Some("source") => {
                explicit = true;
                match v {
                    Some(w) if !w.dynamic => {
                        program.push_str(text);
                        program.push('\n');
                    }
                    _ => fx.code("the awk program is only known at run time"),
                }
            }
            Some("include") => {
                if matches!(text, "inplace" | "inplace.awk") && !v.is_some_and(|w| w.dynamic) {
                    in_place = true;
                } else {
                    fx.code(format!(
                        "awk includes code from `{text}` that agp cannot see"
                    ));
                }
            }
            Some("dump-variables") => fx
                .writes
                .push(v.cloned().unwrap_or_else(|| Word::literal("awkvars.out"))),
            Some("pretty-print" | "profile") => fx
                .writes
                .push(v.cloned().unwrap_or_else(|| Word::literal("awkprof.out"))),
            None if o.spec.short == Some('W') => {
                let name = text.split_once('=').map_or(text, |(n, _)| n);
                if v.is_some_and(|w| w.dynamic) {
                    fx.unknown
                        .push(format!("awk -W `{text}` is only known at run time"));
                } else if name == "sandbox" {
                    sandbox = true;
                } else if !HARMLESS_W.contains(&name) {
                    fx.unknown.push(format!(
                        "awk option `-W {name}` is not in agp's model of awk"
                    ));
                }
            }
            _ => fx.apply_opt("awk", o),
        }
    }
    let mut operands: &[Word] = &parsed.operands;
    if !explicit {
        let Some(rest) = inline_program(operands, "the awk program", &mut program, &mut fx) else {
            return fx;
        };
        operands = rest;
    }
    let pe = program_effects(&program);
    if sandbox {
        // --sandbox disables system(), redirections, pipes and extensions; the environment
        // stays readable.
        fx.code
            .extend(pe.code.into_iter().filter(|c| c.contains("environment")));
    } else {
        fx.code.extend(pe.code);
        fx.reads.extend(pe.reads.into_iter().map(Word::literal));
        fx.writes.extend(pe.writes.into_iter().map(Word::literal));
    }
    for w in operands {
        if !w.dynamic && (w.text == "-" || is_assignment(&w.text)) {
            continue;
        }
        fx.reads.push(w.clone());
        if in_place {
            fx.writes.push(w.clone());
        }
    }
    fx
}

/// `var=value` operands set variables instead of naming input files.
fn is_assignment(t: &str) -> bool {
    t.split_once('=').is_some_and(|(n, _)| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// What an awk program does besides reading its input and printing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProgramEffects {
    pub code: Vec<String>,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// Any other punctuation or operator (`>`, `>>`, `|`, `||`, `<`, `(`, ...).
    Op(String),
    Num,
    Regex,
    Newline,
}

fn tokenize(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let mut out: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' => i += 1,
            b'\\' if b.get(i + 1) == Some(&b'\n') => i += 2,
            b'\n' | b';' => {
                out.push(Tok::Newline);
                i += 1;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                        s.push(match b[i] {
                            b'n' => b'\n',
                            b't' => b'\t',
                            o => o,
                        });
                    } else {
                        s.push(b[i]);
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Str(String::from_utf8_lossy(&s).into_owned()));
            }
            b'/' if regex_may_start(out.last()) => {
                i += 1;
                let mut in_bracket = false;
                while i < b.len() && (in_bracket || b[i] != b'/') && b[i] != b'\n' {
                    match b[i] {
                        b'\\' => i += 1,
                        b'[' => in_bracket = true,
                        b']' => in_bracket = false,
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Regex);
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Ident(src[start..i].to_string()));
            }
            c if c.is_ascii_digit() || c == b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                out.push(Tok::Num);
            }
            _ => {
                // Two-character operators that matter: `||`, `|&`, `>>`, `<=`, `>=`, `&&`, ...
                let two = b.get(i..i + 2).unwrap_or(&[]);
                let op = match two {
                    b"||" | b"|&" | b">>" | b"<=" | b">=" | b"&&" | b"==" | b"!=" => {
                        i += 2;
                        String::from_utf8_lossy(two).into_owned()
                    }
                    _ => {
                        let ch = src[i..].chars().next().unwrap_or(' ');
                        i += ch.len_utf8();
                        ch.to_string()
                    }
                };
                out.push(Tok::Op(op));
            }
        }
    }
    out
}

/// `/` starts a regex unless it can be a division (after an operand).
fn regex_may_start(prev: Option<&Tok>) -> bool {
    match prev {
        None | Some(Tok::Newline) => true,
        Some(Tok::Ident(_) | Tok::Num | Tok::Str(_) | Tok::Regex) => false,
        Some(Tok::Op(o)) => !matches!(o.as_str(), ")" | "]" | "$"),
    }
}

/// Reads an awk program's tokens for what it runs, reads, writes and loads.
pub fn program_effects(src: &str) -> ProgramEffects {
    let toks = tokenize(src);
    let mut out = ProgramEffects::default();
    // Inside a print/printf statement, at the statement's own parenthesis depth, `>` and `>>`
    // redirect output.
    let mut printing: Option<i32> = None;
    let mut depth: i32 = 0;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(id) => match id.as_str() {
                "system" => out
                    .code
                    .push("the awk program calls system(), which runs shell commands".into()),
                // Assigning ARGV/ARGC (or passing ARGV[i] to sub/split) changes which files
                // the program reads.
                "ARGV" | "ARGC" => out.code.push(
                    "the awk program uses ARGV/ARGC, which decide the files it reads".into(),
                ),
                "ENVIRON" => out
                    .code
                    .push("the awk program reads the environment (ENVIRON), which can hold secrets".into()),
                "extension" if matches!(toks.get(i + 1), Some(Tok::Op(o)) if o == "(") => out
                    .code
                    .push("the awk program loads a compiled extension".into()),
                "print" | "printf" => printing = Some(depth),
                "getline" => {
                    // `getline [var] < file`
                    let mut j = i + 1;
                    if matches!(toks.get(j), Some(Tok::Ident(_))) {
                        j += 1;
                    } else if matches!(toks.get(j), Some(Tok::Op(o)) if o == "$") {
                        j += 2;
                    }
                    if matches!(toks.get(j), Some(Tok::Op(o)) if o == "<") {
                        target(&toks, j + 1, "reads", &mut out.reads, &mut out.code);
                    }
                }
                _ => {}
            },
            Tok::Op(o) => match o.as_str() {
                "|" | "|&" => out.code.push(
                    "the awk program pipes to or from a shell command (`|`)".into(),
                ),
                "@" => match toks.get(i + 1) {
                    Some(Tok::Ident(d)) if d == "include" || d == "load" => out.code.push(
                        format!("the awk program uses @{d}, which loads code agp cannot see"),
                    ),
                    Some(Tok::Ident(d)) if d == "namespace" => {}
                    _ => out.code.push(
                        "the awk program makes an indirect function call (`@f()`), which can call system()".into(),
                    ),
                },
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => {
                    depth -= 1;
                    if printing.is_some_and(|d| depth < d) {
                        printing = None;
                    }
                }
                ">" | ">>" if printing == Some(depth) => {
                    target(&toks, i + 1, "writes", &mut out.writes, &mut out.code);
                }
                _ => {}
            },
            Tok::Newline => printing = None,
            _ => {}
        }
        i += 1;
    }
    out
}

/// The file after `<` or `>`: a string literal is a path; anything else is only known at run
/// time.
fn target(toks: &[Tok], at: usize, verb: &str, paths: &mut Vec<String>, code: &mut Vec<String>) {
    let literal = match (toks.get(at), toks.get(at + 1)) {
        (Some(Tok::Str(s)), next) if !matches!(next, Some(Tok::Op(o)) if !matches!(o.as_str(), ")" | "}" | ";" | ">")) => {
            Some(s.clone())
        }
        _ => None,
    };
    match literal {
        Some(p) if p.starts_with("/inet") => {
            code.push(format!("the awk program opens a network connection `{p}`"));
        }
        Some(p) => paths.push(p),
        None => code.push(format!("the awk program {verb} a file named at run time")),
    }
}

super::spec::model_cases! { "cases/awk.cases";
    programs: "awk programs" => Script(|p| {
        let pe = super::program_effects(p);
        cases::Seen::script(pe.code, pe.reads, pe.writes)
    }),
    invocations: "awk" => Model(super::awk),
}
