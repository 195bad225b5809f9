//! perl and ruby (perlrun(1), ruby(1)): their switches, parsed the way the interpreters do.
//!
//! Switches cluster (`-lane`), and a switch's value rule differs per letter: `-e CODE` takes
//! the rest of the word or the next word, `-i.bak` takes the rest of the word, `-l`/`-0` only
//! digits (so `-lne` is `-l -n -e`). Inline code, modules loaded from the command line and
//! programs read from stdin cannot be judged; `-i` edits the files it is given; a script or
//! library directory outside the project is tooling pointed elsewhere.

use super::Effects;
use crate::shell::Word;

/// How a switch letter takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Val {
    Flag,
    /// The rest of the word, or the next word when the rest is empty.
    RestOrNext,
    /// The rest of the word (possibly empty).
    Rest,
    /// Leading characters from this set only; the remainder is more switches.
    Chars(&'static str),
}

/// What a switch means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Means {
    Plain,
    Inline,
    Loads,
    Code(&'static str),
    LibDir,
    ChDir,
    InPlace,
    Info,
}

struct Lang {
    name: &'static str,
    switch: fn(char) -> Option<(Val, Means)>,
    long: fn(&str) -> Option<Means>,
}

fn perl_switch(c: char) -> Option<(Val, Means)> {
    use Means::*;
    use Val::*;
    Some(match c {
        'e' | 'E' => (RestOrNext, Inline),
        'M' | 'm' => (RestOrNext, Loads),
        'I' => (RestOrNext, LibDir),
        'd' => (
            Rest,
            Code("runs the program under a debugger module that reads commands"),
        ),
        'S' => (Flag, Code("runs a script found by searching PATH")),
        'i' => (Rest, InPlace),
        'x' => (Rest, ChDir),
        'F' | 'D' => (Rest, Plain),
        'V' => (Rest, Info),
        'v' | 'h' => (Flag, Info),
        '0' => (Chars("0123456789abcdefABCDEFxX"), Plain),
        'l' => (Chars("01234567"), Plain),
        'C' => (Chars("0123456789IOEioSDALa"), Plain),
        'a' | 'c' | 'f' | 'g' | 'n' | 'p' | 's' | 't' | 'T' | 'u' | 'U' | 'w' | 'W' | 'X' => {
            (Flag, Plain)
        }
        _ => return None,
    })
}

fn perl_long(_: &str) -> Option<Means> {
    None
}

fn ruby_switch(c: char) -> Option<(Val, Means)> {
    use Means::*;
    use Val::*;
    Some(match c {
        'e' => (RestOrNext, Inline),
        'r' => (RestOrNext, Loads),
        'I' => (RestOrNext, LibDir),
        'C' => (RestOrNext, ChDir),
        'E' => (RestOrNext, Plain),
        'S' => (Flag, Code("runs a script found by searching PATH")),
        'i' => (Rest, InPlace),
        'x' => (Rest, ChDir),
        'F' | 'W' | 'K' => (Rest, Plain),
        'v' | 'h' => (Flag, Info),
        '0' => (Chars("01234567"), Plain),
        'a' | 'c' | 'd' | 'l' | 'n' | 'p' | 's' | 'w' | 'y' => (Flag, Plain),
        _ => return None,
    })
}

fn ruby_long(name: &str) -> Option<Means> {
    let base = name.split_once('=').map_or(name, |(n, _)| n);
    match base {
        "version" | "help" | "copyright" => Some(Means::Info),
        "verbose" | "debug" | "yydebug" | "jit" | "yjit" | "rjit" | "encoding"
        | "external-encoding" | "internal-encoding" | "dump" | "backtrace-limit" | "parser" => {
            Some(Means::Plain)
        }
        b if b.starts_with("enable") || b.starts_with("disable") || b.starts_with("yjit-") => {
            Some(Means::Plain)
        }
        _ => None,
    }
}

const PERL: Lang = Lang {
    name: "perl",
    switch: perl_switch,
    long: perl_long,
};
const RUBY: Lang = Lang {
    name: "ruby",
    switch: ruby_switch,
    long: ruby_long,
};

pub fn perl(args: &[Word]) -> Effects {
    interpreter(&PERL, args)
}

pub fn ruby(args: &[Word]) -> Effects {
    interpreter(&RUBY, args)
}

fn interpreter(lang: &Lang, args: &[Word]) -> Effects {
    let name = lang.name;
    let mut fx = Effects::default();
    let (mut inline, mut info, mut in_place) = (false, false, false);
    let mut i = 0;
    let mut stdin = false;
    while i < args.len() {
        let w = &args[i];
        let t = w.text.as_str();
        if w.dynamic
            && (t.starts_with('-')
                || !t.starts_with(|c: char| c.is_alphanumeric() || c == '.' || c == '/'))
        {
            fx.unknown.push(format!(
                "{name} argument `{t}` is only known at run time and could be a switch"
            ));
            return fx;
        }
        if t == "--" {
            i += 1;
            break;
        }
        if t == "-" {
            stdin = true;
            i += 1;
            break;
        }
        if !t.starts_with('-') || t.len() < 2 {
            break;
        }
        i += 1;
        if let Some(long) = t.strip_prefix("--") {
            match (lang.long)(long) {
                Some(Means::Info) => info = true,
                Some(_) => {}
                None => fx.unknown.push(format!(
                    "{name} switch `{t}` is not in agp's model of {name}"
                )),
            }
            continue;
        }
        let body = &t[1..];
        let mut pos = 0;
        while let Some(c) = body[pos..].chars().next() {
            pos += c.len_utf8();
            let Some((val, means)) = (lang.switch)(c) else {
                fx.unknown.push(format!(
                    "{name} switch `-{c}` is not in agp's model of {name}"
                ));
                continue;
            };
            let rest = &body[pos..];
            let value: Option<Word> = match val {
                Val::Flag => None,
                Val::Rest => {
                    pos = body.len();
                    Some(Word {
                        text: rest.to_string(),
                        ..w.clone()
                    })
                }
                Val::RestOrNext => {
                    pos = body.len();
                    if rest.is_empty() {
                        let v = args.get(i).cloned();
                        i += 1;
                        v
                    } else {
                        Some(Word {
                            text: rest.to_string(),
                            ..w.clone()
                        })
                    }
                }
                Val::Chars(set) => {
                    let n = rest.chars().take_while(|c| set.contains(*c)).count();
                    pos += n;
                    None
                }
            };
            match means {
                Means::Plain => {}
                Means::Info => info = true,
                Means::Inline => {
                    inline = true;
                    fx.code(format!("inline code passed to {name} cannot be judged"));
                }
                Means::Loads => fx.code(format!(
                    "{name} -{c} {} loads a module, which runs its code",
                    value.as_ref().map_or("", |v| v.text.as_str())
                )),
                Means::Code(why) => fx.code(format!("{name} -{c} {why}")),
                Means::LibDir | Means::ChDir => {
                    if let Some(v) = value.filter(|v| !v.text.is_empty()) {
                        fx.foreign.push(v);
                    }
                }
                Means::InPlace => in_place = true,
            }
        }
    }
    let rest = &args[i.min(args.len())..];
    let files = if inline || stdin {
        rest
    } else {
        if let Some(script) = rest.first() {
            fx.foreign.push(script.clone());
            &rest[1..]
        } else {
            stdin = !info;
            rest
        }
    };
    if stdin && !inline {
        fx.code(format!(
            "{name} reads its program from stdin, which cannot be judged"
        ));
    }
    if in_place {
        fx.writes.extend(files.iter().cloned());
    }
    fx
}

super::spec::model_cases! { "cases/interp.cases";
    perl_table: "perl" => Model(super::perl),
    ruby_table: "ruby" => Model(super::ruby),
}
