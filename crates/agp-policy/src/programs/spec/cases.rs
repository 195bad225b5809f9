//! The case files of the program models (`programs/cases/*.cases`): parsing and running
//! their rows. Test-only.

use crate::programs::{Effects, Model};
use crate::shell::Word;

/// What a row is run through.
#[derive(Clone, Copy)]
pub(crate) enum Subject {
    /// A model, given the row's words; `only` compares reads and writes in order.
    Model(Model),
    /// A model whose `only` rows compare reads and writes as sets, where the order the
    /// model reports them in carries no meaning.
    Unordered(Model),
    /// A script language: the row is the script itself, with `\n`, `\\` and `\#` escapes.
    Script(fn(&str) -> Seen),
}

/// What a row produced, reduced to what rows can ask about.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub code: Vec<String>,
    pub unknown: Vec<String>,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    pub foreign: Vec<String>,
    /// Commands it runs, each as its words joined by spaces.
    pub runs: Vec<String>,
}

impl Seen {
    fn of(fx: &Effects) -> Self {
        let texts = |v: &[Word]| v.iter().map(|w| w.text.clone()).collect();
        Seen {
            code: fx.code.clone(),
            unknown: fx.unknown.clone(),
            reads: texts(&fx.reads),
            writes: texts(&fx.writes),
            foreign: texts(&fx.foreign),
            runs: fx.runs.iter().map(|r| texts(r).join(" ")).collect(),
        }
    }

    /// What a script (awk program, sed script) does.
    pub(crate) fn script(code: Vec<String>, reads: Vec<String>, writes: Vec<String>) -> Self {
        Seen {
            code,
            reads,
            writes,
            ..Seen::default()
        }
    }
}

/// A row's expectation.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    /// No code, unknown options, reads, writes or foreign paths.
    Clean,
    Code,
    /// Unknown options and no code.
    Unknown,
    Reads(String),
    Writes(String),
    Foreign(String),
    Only(Exact),
}

/// Exactly this code flag, these reads, writes and commands run, and this many unknown
/// options (foreign paths are not compared).
#[derive(Debug, PartialEq, Eq)]
struct Exact {
    code: bool,
    reads: Vec<String>,
    writes: Vec<String>,
    runs: Vec<String>,
    unknown: usize,
}

struct Row<'a> {
    line: usize,
    input: &'a str,
    want: Want,
}

struct Section<'a> {
    name: &'a str,
    rows: Vec<Row<'a>>,
}

/// `path` (relative to the source file `src`) as one path, for messages.
pub(crate) fn path_beside(src: &str, path: &str) -> String {
    let mut parts: Vec<&str> = src.split('/').collect();
    parts.pop();
    for part in path.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "." => {}
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

/// Reads a case file; a line that is not blank, a `#` comment, a `[section]` or a row
/// fails with file:line, so that no row is silently skipped.
fn parse<'a>(file: &str, text: &'a str) -> Result<Vec<Section<'a>>, String> {
    let mut sections: Vec<Section<'a>> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let at = |e: String| format!("{file}:{line}: {e}: `{raw}`");
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']').filter(|n| !n.trim().is_empty()) else {
                return Err(at("a section header is `[name]`".into()));
            };
            if sections.iter().any(|s| s.name == name) {
                return Err(at(format!("a second [{name}] section")));
            }
            if let Some(prev) = sections.last().filter(|s| s.rows.is_empty()) {
                return Err(at(format!("[{}] has no rows", prev.name)));
            }
            sections.push(Section {
                name,
                rows: Vec::new(),
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(at("a row before any [section]".into()));
        };
        let Some((input, want)) = t.rsplit_once("=>") else {
            return Err(at("a row is `COMMAND LINE => EXPECTATION`".into()));
        };
        section.rows.push(Row {
            line,
            input: input.trim(),
            want: want_of(want.trim()).map_err(at)?,
        });
    }
    match sections.last() {
        None => Err(format!("{file}: no [section]")),
        Some(s) if s.rows.is_empty() => Err(format!("{file}: [{}] has no rows", s.name)),
        Some(_) => Ok(sections),
    }
}

fn want_of(text: &str) -> Result<Want, String> {
    if let Some(clauses) = text.strip_prefix("only ") {
        return only_of(clauses.trim());
    }
    let w = quoted_words(text)?;
    let w: Vec<&str> = w.iter().map(|w| w.text.as_str()).collect();
    Ok(match w[..] {
        ["clean"] => Want::Clean,
        ["code"] => Want::Code,
        ["unknown"] => Want::Unknown,
        ["reads", p] => Want::Reads(p.into()),
        ["writes", p] => Want::Writes(p.into()),
        ["foreign", p] => Want::Foreign(p.into()),
        _ => {
            return Err("the expectation is one of clean, code, unknown, reads P, \
                        writes P, foreign P, only …"
                .into())
        }
    })
}

/// `nothing`, or `,`-separated clauses: `code`, `reads P…`, `writes P…`, `runs C…`,
/// `unknown N`.
fn only_of(text: &str) -> Result<Want, String> {
    let (mut code, mut reads, mut writes, mut runs, mut unknown) = (None, None, None, None, None);
    let clauses = if text == "nothing" {
        Vec::new()
    } else {
        split_clauses(text)
    };
    for clause in clauses {
        let w = quoted_words(clause)?;
        let mut w = w.into_iter().map(|w| w.text);
        let key = w.next().unwrap_or_default();
        let rest: Vec<String> = w.collect();
        let slot_taken = match (key.as_str(), &rest[..]) {
            ("code", []) => code.replace(true).is_some(),
            ("reads", [_, ..]) => reads.replace(rest).is_some(),
            ("writes", [_, ..]) => writes.replace(rest).is_some(),
            ("runs", [_, ..]) => runs.replace(rest).is_some(),
            ("unknown", [n]) => {
                let n = n
                    .parse()
                    .map_err(|_| format!("`unknown {n}`: not a count"))?;
                unknown.replace(n).is_some()
            }
            _ => {
                return Err(format!(
                    "`{}` is not `code`, `reads P…`, `writes P…`, `runs C…` or `unknown N`",
                    clause.trim()
                ))
            }
        };
        if slot_taken {
            return Err(format!("`{key}` twice"));
        }
    }
    Ok(Want::Only(Exact {
        code: code.unwrap_or(false),
        reads: reads.unwrap_or_default(),
        writes: writes.unwrap_or_default(),
        runs: runs.unwrap_or_default(),
        unknown: unknown.unwrap_or(0),
    }))
}

/// Splits at commas outside `'…'`.
fn split_clauses(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// Words of a command line: space-separated, `'…'` quoting, an unquoted `$` makes a word
/// dynamic; an unclosed quote is an error.
pub(crate) fn quoted_words(line: &str) -> Result<Vec<Word>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_word, mut quoted, mut dynamic) = (false, false, false);
    let mut end = |cur: &mut String, dynamic: bool| {
        out.push(Word {
            text: std::mem::take(cur),
            dynamic,
            substitution: false,
        });
    };
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' if !quoted => {
                if in_word {
                    end(&mut cur, dynamic);
                }
                in_word = false;
                dynamic = false;
            }
            _ => {
                dynamic |= c == '$' && !quoted;
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("an unclosed `'`".into());
    }
    if in_word {
        end(&mut cur, dynamic);
    }
    Ok(out)
}

/// A script row's text: `\n` is a newline, `\\` a backslash, `\#` a `#` (so that a script
/// may start with one without being a comment); any other `\` is an error.
fn unescape(input: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('#') => out.push('#'),
            other => {
                return Err(format!(
                    "`\\{}` is not \\n, \\\\ or \\#",
                    other.unwrap_or(' ')
                ))
            }
        }
    }
    Ok(out)
}

fn holds(want: &Want, seen: &Seen, ordered: bool) -> bool {
    let has = |v: &[String], p: &str| v.iter().any(|x| x == p);
    let same = |got: &[String], want: &[String]| {
        let (mut got, mut want) = (got.to_vec(), want.to_vec());
        if !ordered {
            got.sort_unstable();
            want.sort_unstable();
        }
        got == want
    };
    match want {
        Want::Clean => {
            seen.code.is_empty()
                && seen.unknown.is_empty()
                && seen.reads.is_empty()
                && seen.writes.is_empty()
                && seen.foreign.is_empty()
        }
        Want::Code => !seen.code.is_empty(),
        Want::Unknown => !seen.unknown.is_empty() && seen.code.is_empty(),
        Want::Reads(p) => has(&seen.reads, p),
        Want::Writes(p) => has(&seen.writes, p),
        Want::Foreign(p) => has(&seen.foreign, p),
        Want::Only(e) => {
            seen.code.is_empty() != e.code
                && same(&seen.reads, &e.reads)
                && same(&seen.writes, &e.writes)
                && seen.runs == e.runs
                && seen.unknown.len() == e.unknown
        }
    }
}

fn sections<'a>(file: &str, text: &'a str) -> Vec<Section<'a>> {
    parse(file, text).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the rows of `[section]`; fails naming file:line of every row that does not hold.
pub(crate) fn run(file: &str, text: &str, section: &str, subject: Subject) {
    let sections = sections(file, text);
    let Some(sec) = sections.iter().find(|s| s.name == section) else {
        panic!("{file}: no [{section}] section");
    };
    let failures: Vec<String> = sec
        .rows
        .iter()
        .filter_map(|row| {
            let at = format!("{file}:{}: `{}`", row.line, row.input);
            let (seen, ordered) = match subject {
                Subject::Model(m) => (quoted_words(row.input).map(|w| Seen::of(&m(&w))), true),
                Subject::Unordered(m) => (quoted_words(row.input).map(|w| Seen::of(&m(&w))), false),
                Subject::Script(s) => (unescape(row.input).map(|t| s(&t)), true),
            };
            match seen {
                Err(e) => Some(format!("{at}: {e}")),
                Ok(seen) if holds(&row.want, &seen, ordered) => None,
                Ok(seen) => Some(format!("{at}: wanted {:?}, got {seen:?}", row.want)),
            }
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows of [{section}] failed:\n{}",
        failures.len(),
        sec.rows.len(),
        failures.join("\n")
    );
}

/// Fails unless the file's sections are, in order, the ones the tests run.
pub(crate) fn all_run(file: &str, text: &str, run: &[&str]) {
    let found: Vec<&str> = sections(file, text).iter().map(|s| s.name).collect();
    assert_eq!(
        found, run,
        "{file}: its sections and the tests that run them differ"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_lines_fail_with_file_and_line() {
        for (text, wanted) in [
            ("x => code", "f.cases:1: a row before any [section]"),
            (
                "[s]\nx code",
                "f.cases:2: a row is `COMMAND LINE => EXPECTATION`",
            ),
            ("[s]\nx => cod", "f.cases:2: the expectation is one of"),
            ("[s]\nx => reads", "f.cases:2: the expectation is one of"),
            ("[s]\nx => only code, code", "f.cases:2: `code` twice"),
            (
                "[s]\nx => only unknown x",
                "f.cases:2: `unknown x`: not a count",
            ),
            ("[s]\nx => only reads", "f.cases:2: `reads` is not"),
            ("[s]\nx => writes 'a", "f.cases:2: an unclosed `'`"),
            ("[s\nx => code", "f.cases:1: a section header is `[name]`"),
            ("[s]\n[t]\nx => code", "f.cases:2: [s] has no rows"),
            ("[s]\nx => code\n[s]", "f.cases:3: a second [s] section"),
            ("[s]\nx => code\n[t]", "f.cases: [t] has no rows"),
            ("# only a comment", "f.cases: no [section]"),
        ] {
            let Err(e) = parse("f.cases", text) else {
                panic!("`{text}` was read");
            };
            assert!(e.starts_with(wanted), "`{text}`: {e}");
        }
    }

    #[test]
    fn rows_read_as_written() {
        let text = "# why\n[s]\n  -a 'b c' $D  =>  only code, reads 'x, y' z, unknown 2\n\
                    => clean\n";
        let secs = parse("f", text).unwrap();
        let [row, empty] = &secs[0].rows[..] else {
            panic!("two rows");
        };
        assert_eq!((row.line, row.input, empty.input), (3, "-a 'b c' $D", ""));
        let w = quoted_words(row.input).unwrap();
        let w: Vec<(&str, bool)> = w.iter().map(|w| (w.text.as_str(), w.dynamic)).collect();
        assert_eq!(w, [("-a", false), ("b c", false), ("$D", true)]);
        assert_eq!(
            row.want,
            Want::Only(Exact {
                code: true,
                reads: vec!["x, y".into(), "z".into()],
                writes: vec![],
                runs: vec![],
                unknown: 2
            })
        );
        assert_eq!(empty.want, Want::Clean);
        assert_eq!(unescape(r"\#a\\b\nc").unwrap(), "#a\\b\nc");
        assert!(unescape(r"s/\d/").is_err());
    }

    #[test]
    fn a_failing_row_names_its_file_and_line() {
        let text = "[s]\nx => clean\ny => code\n";
        let fail = std::panic::catch_unwind(|| {
            run("f.cases", text, "s", Subject::Script(|_| Seen::default()));
        });
        let msg = fail.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("f.cases:3: `y`: wanted Code"), "{msg}");
        assert!(!msg.contains("f.cases:2"), "{msg}");
    }
}
