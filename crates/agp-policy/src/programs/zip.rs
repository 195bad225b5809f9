//! Info-ZIP `zip` 3.0 and `unzip` 6.0. Their option parsers are their own: zip has
//! multi-letter short options (`-TT`, `-FS`, `-lf`) and list-taking `-x`/`-i`; unzip takes
//! `-d DIR` and `-x LIST` after the archive too.

use super::{join_dir, unknown_reason, Effects};
use crate::shell::Word;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Z {
    Flag,
    Value,
    /// A list of patterns up to the next option.
    List,
    Writes,
    Runs,
    NamesStdin,
    Move,
    Delete,
}

/// zip options by name (without the dash); single letters may be clustered.
fn zip_opt(name: &str) -> Option<Z> {
    use Z::*;
    Some(match name {
        "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "A" | "AC" | "AS" | "c"
        | "C" | "D" | "db" | "dc" | "dd" | "dg" | "du" | "dv" | "DF" | "e" | "f" | "F" | "FF"
        | "FI" | "FS" | "g" | "h" | "h2" | "ic" | "j" | "J" | "k" | "l" | "la" | "li" | "ll"
        | "L" | "MM" | "nw" | "o" | "q" | "r" | "R" | "sb" | "sc" | "sf" | "sp" | "su" | "sv"
        | "T" | "u" | "U" | "v" | "ws" | "X" | "y" | "z" | "$" | "!" => Flag,
        "n" | "P" | "s" | "t" | "tt" | "Z" | "ds" | "UN" => Value,
        "x" | "i" => List,
        "O" | "lf" | "b" => Writes,
        "TT" => Runs,
        "@" => NamesStdin,
        "m" => Move,
        "d" => Delete,
        _ => return None,
    })
}

fn zip_long(name: &str) -> Option<&'static str> {
    Some(match name {
        "adjust-sfx" => "A",
        "append" | "grow" => "g",
        "archive-clear" => "AC",
        "archive-set" => "AS",
        "copy-entries" => "U",
        "compression-method" => "Z",
        "delete" => "d",
        "difference-archive" => "DF",
        "display-bytes" => "db",
        "display-counts" => "dc",
        "display-dots" => "dd",
        "display-globaldots" => "dg",
        "display-usize" => "du",
        "display-volume" => "dv",
        "dot-size" => "ds",
        "encrypt" => "e",
        "entry-comments" => "c",
        "exclude" => "x",
        "fifo" => "FI",
        "filesync" => "FS",
        "fix" => "F",
        "fixfix" => "FF",
        "freshen" => "f",
        "help" => "h",
        "include" => "i",
        "junk-paths" => "j",
        "junk-sfx" => "J",
        "latest-time" => "o",
        "license" => "L",
        "log-append" => "la",
        "log-file" => "lf",
        "log-info" => "li",
        "must-match" => "MM",
        "no-dir-entries" => "D",
        "no-extra" => "X",
        "no-wild" => "nw",
        "out" | "output-file" => "O",
        "password" => "P",
        "quiet" => "q",
        "recurse-paths" => "r",
        "recurse-patterns" => "R",
        "show-files" => "sf",
        "split-bell" => "sb",
        "split-pause" => "sp",
        "split-size" => "s",
        "split-verbose" => "sv",
        "suffixes" => "n",
        "temp-path" => "b",
        "test" => "T",
        "to-crlf" => "l",
        "from-crlf" => "ll",
        "unzip-command" => "TT",
        "update" => "u",
        "verbose" => "v",
        "version" => "v",
        "wild-stop-dirs" => "ws",
        "symlinks" => "y",
        "move" => "m",
        "archive-comment" => "z",
        "from-date" => "t",
        "before-date" => "tt",
        "names-stdin" => "@",
        "case-insensitive" => "ic",
        "more-help" => "h2",
        _ => return None,
    })
}

/// The zip model.
pub fn zip(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let mut operands: Vec<Word> = Vec::new();
    let (mut moving, mut deleting) = (false, false);
    let mut i = 0;
    let mut opts_done = false;
    while i < args.len() {
        let w = &args[i];
        i += 1;
        let t = w.text.as_str();
        if opts_done || !t.starts_with('-') || t == "-" {
            if w.dynamic && !opts_done && w.text.starts_with(['$', '`', '*', '?', '[']) {
                fx.unknown.push(unknown_reason("zip", t));
            }
            operands.push(w.clone());
            continue;
        }
        if t == "--" {
            opts_done = true;
            continue;
        }
        if w.dynamic {
            fx.unknown.push(unknown_reason("zip", t));
            continue;
        }
        // `--long[=value]`, then a whole multi-letter name, then a cluster of letters.
        let (names, mut glued): (Vec<String>, Option<String>) =
            if let Some(l) = t.strip_prefix("--") {
                let (n, v) = l
                    .split_once('=')
                    .map_or((l, None), |(n, v)| (n, Some(v.to_string())));
                if let Some(s) = zip_long(n) {
                    (vec![s.to_string()], v)
                } else {
                    fx.unknown.push(unknown_reason("zip", t));
                    continue;
                }
            } else if zip_opt(&t[1..]).is_some() {
                (vec![t[1..].to_string()], None)
            } else {
                let mut names = Vec::new();
                let mut glued = None;
                for (p, c) in t[1..].char_indices() {
                    let n = c.to_string();
                    match zip_opt(&n) {
                        Some(Z::Value | Z::Writes | Z::Runs) => {
                            names.push(n);
                            let rest = &t[1 + p + c.len_utf8()..];
                            if !rest.is_empty() {
                                glued = Some(rest.to_string());
                            }
                            break;
                        }
                        Some(_) => names.push(n),
                        None => {
                            fx.unknown.push(unknown_reason("zip", &format!("-{c}")));
                        }
                    }
                }
                (names, glued)
            };
        for n in names {
            let kind = zip_opt(&n).unwrap_or(Z::Flag);
            let mut value = || -> Option<Word> {
                if let Some(g) = glued.take() {
                    return Some(Word {
                        text: g,
                        ..w.clone()
                    });
                }
                let v = args.get(i).cloned();
                i += 1;
                v
            };
            match kind {
                Z::Flag => {}
                Z::Value => {
                    value();
                }
                Z::Writes => {
                    if let Some(v) = value() {
                        fx.writes.push(v);
                    }
                }
                Z::Runs => {
                    let v = value().map(|v| v.text).unwrap_or_default();
                    fx.code(format!(
                        "zip -TT `{v}` runs this command to test the archive"
                    ));
                }
                Z::List => {
                    while args.get(i).is_some_and(|a| !a.text.starts_with('-')) {
                        i += 1;
                    }
                }
                Z::NamesStdin => {
                    fx.code("zip -@ reads the names of the files to add from standard input");
                }
                Z::Move => moving = true,
                Z::Delete => deleting = true,
            }
        }
    }
    let mut ops = operands.into_iter();
    if let Some(archive) = ops.next() {
        if archive.text != "-" || archive.dynamic {
            fx.reads.push(archive.clone());
            fx.writes.push(archive);
        }
    }
    if !deleting {
        for w in ops {
            if w.text == "-" && !w.dynamic {
                continue;
            }
            fx.reads.push(w.clone());
            if moving {
                fx.writes.push(w);
            }
        }
    }
    fx
}

/// unzip options: letter → takes a value?
fn unzip_opt(c: char) -> Option<bool> {
    Some(match c {
        'd' | 'x' | 'P' | 'I' | 'O' => true,
        'Z' | 'c' | 'f' | 'l' | 'p' | 't' | 'T' | 'u' | 'v' | 'z' | 'a' | 'b' | 'B' | 'C' | 'D'
        | 'e' | 'j' | 'K' | 'L' | 'M' | 'n' | 'N' | 'o' | 'q' | 's' | 'S' | 'U' | 'V' | 'W'
        | 'X' | 'Y' | '$' | ':' | '^' | '2' | 'h' => false,
        _ => return None,
    })
}

/// The unzip model.
pub fn unzip(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let mut flags: Vec<char> = Vec::new();
    let mut dest: Option<Word> = None;
    let mut operands: Vec<Word> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let w = &args[i];
        i += 1;
        let t = w.text.as_str();
        if !t.starts_with('-') || t == "-" {
            if w.dynamic && w.text.starts_with(['$', '`', '*', '?', '[']) {
                fx.unknown.push(unknown_reason("unzip", t));
            }
            operands.push(w.clone());
            continue;
        }
        if w.dynamic || t.starts_with("--") {
            fx.unknown.push(unknown_reason("unzip", t));
            continue;
        }
        for (p, c) in t[1..].char_indices() {
            match unzip_opt(c) {
                None => fx.unknown.push(unknown_reason("unzip", &format!("-{c}"))),
                Some(false) => flags.push(c),
                Some(true) => {
                    let rest = &t[1 + p + c.len_utf8()..];
                    if c == 'x' {
                        // Members to leave out: every following word up to an option.
                        while args.get(i).is_some_and(|a| !a.text.starts_with('-')) {
                            i += 1;
                        }
                        break;
                    }
                    let v = if rest.is_empty() {
                        i += 1;
                        args.get(i - 1).cloned()
                    } else {
                        Some(Word {
                            text: rest.to_string(),
                            ..w.clone()
                        })
                    };
                    if c == 'd' {
                        dest = v;
                    }
                    break;
                }
            }
        }
    }
    let mut ops = operands.into_iter();
    if let Some(archive) = ops.next() {
        fx.reads.push(archive);
    }
    let members: Vec<Word> = ops.collect();
    let listing = flags
        .iter()
        .any(|c| matches!(c, 'Z' | 'l' | 't' | 'v' | 'z' | 'c' | 'p'));
    if listing {
        return fx;
    }
    let target = dest.unwrap_or_else(|| Word::literal("."));
    if flags.contains(&':') {
        fx.code("unzip -: extracts members with `../` in their names, which may write anywhere");
    }
    let patterns = members
        .iter()
        .any(|w| w.dynamic || w.text.contains(['*', '?', '[']));
    if members.is_empty() || patterns {
        fx.code(format!(
            "unzip extracts an archive whose members agp cannot see; they may overwrite any file under `{}`",
            target.text
        ));
        fx.writes.push(target);
    } else {
        for m in &members {
            fx.writes.push(join_dir(Some(&target), m));
        }
    }
    fx
}

super::spec::model_cases! { "cases/zip.cases";
    zip: "zip" => Model(super::zip),
    unzip: "unzip" => Model(super::unzip),
}
