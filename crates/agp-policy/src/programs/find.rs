//! GNU findutils `find`: start points, the expression's tests and actions. `-exec` and friends
//! run commands; `-delete` removes whatever the expression selects under the start points;
//! `-fprint*`/`-fls` write files.

use super::{unknown_reason, Effects};
use crate::shell::Word;

/// How many words a primary takes after it (for `-exec` and friends: up to `;` or `+`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Flag,
    /// Takes one plain value.
    Value,
    /// Takes a file it reads (or stats).
    Reads,
    /// Takes a file it writes.
    Writes,
    /// `-fprintf FILE FORMAT`.
    WritesThenValue,
    Exec,
    Delete,
    /// `-files0-from FILE`: start points come from a file.
    StartsFrom,
}

fn primary(name: &str) -> Option<Kind> {
    use Kind::*;
    Some(match name {
        // Options.
        "-d"
        | "-depth"
        | "-follow"
        | "-help"
        | "--help"
        | "-ignore_readdir_race"
        | "-mount"
        | "-noignore_readdir_race"
        | "-noleaf"
        | "-version"
        | "--version"
        | "-warn"
        | "-nowarn"
        | "-xdev" => Flag,
        "-maxdepth" | "-mindepth" | "-regextype" => Value,
        "-files0-from" => StartsFrom,
        // Tests.
        "-empty" | "-executable" | "-false" | "-nogroup" | "-nouser" | "-readable" | "-true"
        | "-writable" => Flag,
        "-amin" | "-atime" | "-cmin" | "-context" | "-ctime" | "-fstype" | "-gid" | "-group"
        | "-ilname" | "-iname" | "-inum" | "-ipath" | "-iregex" | "-iwholename" | "-links"
        | "-lname" | "-mmin" | "-mtime" | "-name" | "-path" | "-perm" | "-regex" | "-size"
        | "-type" | "-uid" | "-used" | "-user" | "-wholename" | "-xtype" => Value,
        "-anewer" | "-cnewer" | "-newer" | "-samefile" => Reads,
        // Actions.
        "-ls" | "-print" | "-print0" | "-prune" | "-quit" => Flag,
        "-printf" => Value,
        "-fls" | "-fprint" | "-fprint0" => Writes,
        "-fprintf" => WritesThenValue,
        "-exec" | "-execdir" | "-ok" | "-okdir" => Exec,
        "-delete" => Delete,
        // Operators.
        "(" | ")" | "!" | "," | "-not" | "-a" | "-and" | "-o" | "-or" => Flag,
        _ => {
            // -newerXY: X in aBcm, Y in aBcmt; Y = t takes a date, otherwise a file.
            let xy = name.strip_prefix("-newer")?.as_bytes();
            match xy {
                [x, y] if b"aBcm".contains(x) && b"aBcmt".contains(y) => {
                    if *y == b't' {
                        Value
                    } else {
                        Reads
                    }
                }
                _ => return None,
            }
        }
    })
}

/// Does this word start the expression (and so end the start points)?
fn starts_expression(w: &Word) -> bool {
    let t = w.text.as_str();
    (t.starts_with('-') && t.len() > 1) || matches!(t, "(" | "!" | ")" | ",")
}

/// The find model.
pub fn find(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let mut i = 0;
    // Leading options: -H -L -P, -D DEBUGOPTS, -OLEVEL.
    while let Some(w) = args.get(i) {
        let t = w.text.as_str();
        if w.dynamic && t.starts_with('-') {
            break;
        }
        match t {
            "-H" | "-L" | "-P" => i += 1,
            "-D" => i += 2,
            "--" => {
                i += 1;
                break;
            }
            _ if t.starts_with("-O") && t[2..].chars().all(|c| c.is_ascii_digit()) => i += 1,
            _ => break,
        }
    }
    let mut starts: Vec<Word> = Vec::new();
    while let Some(w) = args.get(i) {
        if starts_expression(w) {
            break;
        }
        starts.push(w.clone());
        i += 1;
    }
    let mut starts_unknown = false;
    let mut delete = false;
    while let Some(w) = args.get(i) {
        i += 1;
        if w.dynamic {
            fx.unknown.push(unknown_reason("find", &w.text));
            continue;
        }
        let Some(kind) = primary(&w.text) else {
            fx.unknown.push(unknown_reason("find", &w.text));
            continue;
        };
        match kind {
            Kind::Flag => {}
            Kind::Value => i += 1,
            Kind::Reads => {
                if let Some(v) = args.get(i) {
                    fx.reads.push(v.clone());
                }
                i += 1;
            }
            Kind::Writes | Kind::WritesThenValue => {
                if let Some(v) = args.get(i) {
                    fx.writes.push(v.clone());
                }
                i += if kind == Kind::Writes { 1 } else { 2 };
            }
            Kind::StartsFrom => {
                if let Some(v) = args.get(i) {
                    fx.reads.push(v.clone());
                }
                starts_unknown = true;
                i += 1;
            }
            Kind::Delete => delete = true,
            Kind::Exec => {
                let start = i;
                while i < args.len() && !matches!(args[i].text.as_str(), ";" | "+") {
                    i += 1;
                }
                if i > start {
                    fx.runs.push(args[start..i].to_vec());
                }
                i += 1;
            }
        }
    }
    if starts.is_empty() && !starts_unknown {
        starts.push(Word::literal("."));
    }
    if starts_unknown {
        fx.code("find takes its start points from a file agp cannot see");
    }
    for s in &starts {
        fx.reads.push(s.clone());
        if delete {
            // Whatever the tests select, -delete may remove anything under the start point.
            fx.writes.push(s.clone());
        }
    }
    fx
}

super::spec::model_cases! { "cases/find.cases";
    table: "find" => Model(super::find),
}
