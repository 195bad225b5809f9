//! A getopt-compatible parser driven by static option tables.
//!
//! Programs spell the same option many ways (`-o F`, `-oF`, `--output F`, `--output=F`,
//! `--out=F`, `-abo F`, options after operands). Judging the spelled text would let any of
//! those hide a write or a command; parsing the way the program itself does makes every
//! spelling the same [`ParsedOpt`]. What the table does not know is reported, never guessed.

use crate::shell::Word;

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Flag,
    /// The value is glued (`-oF`, `--out=F`) or the next word.
    Required,
    /// GNU `optional_argument`: the value only counts when glued (`-i.bak`, `--in-place=.bak`).
    Optional,
}

/// What an option (or its value) makes the program do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Harmless.
    Plain,
    /// The value is a file the program reads.
    ReadsFile,
    /// The value is a file it writes, creates, truncates or deletes.
    WritesFile,
    /// The value is a directory it works in: later relative paths are relative to it.
    ChangesDir,
    /// The value is code, a command, a program or a script that gets executed.
    RunsCode(&'static str),
    /// The value points project tooling at code or configuration elsewhere.
    Foreign,
    /// The flag itself runs code, writes or deletes; the text says what.
    Dangerous(&'static str),
}

/// One option of a program, as its manual lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptSpec {
    pub short: Option<char>,
    pub long: Option<&'static str>,
    pub arity: Arity,
    pub effect: Effect,
}

impl OptSpec {
    /// Shorthand for tables: `OptSpec::new(Some('o'), Some("output"), Arity::Required, Effect::WritesFile)`.
    pub const fn new(
        short: Option<char>,
        long: Option<&'static str>,
        arity: Arity,
        effect: Effect,
    ) -> Self {
        Self {
            short,
            long,
            arity,
            effect,
        }
    }
}

/// How a program reads its command line.
#[derive(Debug, Clone, Copy)]
pub struct Grammar {
    pub opts: &'static [OptSpec],
    /// GNU `getopt_long`: unique prefixes of long options are accepted (`--compress-prog`).
    pub long_abbrev: bool,
    /// Options may follow operands (GNU permutation) until `--`.
    pub permute: bool,
    /// `-name` style long options (find, some BSD tools).
    pub single_dash_long: bool,
    /// `-abc` = `-a -b -c`; a value-taking short option takes the rest of the word.
    pub clustering: bool,
}

/// One option found on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOpt {
    pub spec: &'static OptSpec,
    pub value: Option<Word>,
    /// The option as spelled (`-o`, `--compress-prog`), without its value.
    pub raw: String,
}

/// A command line split into options, operands and what the model does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub opts: Vec<ParsedOpt>,
    pub operands: Vec<Word>,
    /// Options as spelled that the grammar does not know (or words only known at run time
    /// standing where an option could be).
    pub unknown: Vec<String>,
}

impl Parsed {
    /// The options whose spec has the given long name.
    pub fn find<'a>(&'a self, long: &'a str) -> impl Iterator<Item = &'a ParsedOpt> + 'a {
        self.opts.iter().filter(move |o| o.spec.long == Some(long))
    }
    /// Is the option with this long name present?
    pub fn has(&self, long: &str) -> bool {
        self.opts.iter().any(|o| o.spec.long == Some(long))
    }
    /// Is the option with this short letter present?
    pub fn has_short(&self, short: char) -> bool {
        self.opts.iter().any(|o| o.spec.short == Some(short))
    }
}

/// Characters that start a run-time expansion inside a word's text: from there on the word's
/// value is unknown.
fn is_dynamic_char(c: char) -> bool {
    matches!(
        c,
        '$' | '`' | '*' | '?' | '[' | '{' | '<' | '(' | '\\' | '"' | '\''
    )
}

/// Could a word only known at run time begin with `-` (and so be an option)?
fn may_start_with_dash(w: &Word) -> bool {
    w.dynamic
        && w.text
            .chars()
            .next()
            .is_none_or(|c| c == '-' || is_dynamic_char(c))
}

/// A word carrying `text`, dynamic when the source word was.
fn sub_word(of: &Word, text: &str) -> Word {
    Word {
        text: text.to_string(),
        dynamic: of.dynamic,
        substitution: of.substitution,
    }
}

/// Parses `args` (argv[1..]) the way getopt_long with this grammar would.
pub fn parse(grammar: &Grammar, args: &[Word]) -> Parsed {
    let mut out = Parsed::default();
    let mut opts_done = false;
    let mut i = 0;
    while i < args.len() {
        let w = &args[i];
        i += 1;
        let t = w.text.as_str();
        if opts_done {
            out.operands.push(w.clone());
            continue;
        }
        if t == "--" && !w.dynamic {
            opts_done = true;
            continue;
        }
        if w.dynamic && !t.starts_with('-') {
            if may_start_with_dash(w) {
                // `$x` could expand to `--anything`: the program may see an option we cannot.
                out.unknown.push(t.to_string());
            }
            out.operands.push(w.clone());
            if !grammar.permute {
                opts_done = true;
            }
            continue;
        }
        if t.len() < 2 || !t.starts_with('-') {
            out.operands.push(w.clone());
            if !grammar.permute {
                opts_done = true;
            }
            continue;
        }
        if let Some(body) = t.strip_prefix("--") {
            i = long_opt(grammar, args, i, w, body, "--", &mut out);
            continue;
        }
        let body = &t[1..];
        if grammar.single_dash_long && single_dash_known(grammar, body) {
            i = long_opt(grammar, args, i, w, body, "-", &mut out);
            continue;
        }
        i = short_cluster(grammar, args, i, w, body, &mut out);
    }
    out
}

/// Does `-body` name a long option of a single-dash-long grammar (exactly, no abbreviation)?
fn single_dash_known(grammar: &Grammar, body: &str) -> bool {
    let name = body.split_once('=').map_or(body, |(n, _)| n);
    grammar.opts.iter().any(|o| o.long == Some(name))
}

/// The spec a long name refers to: exact match first, then a unique prefix when allowed.
fn lookup_long(grammar: &Grammar, name: &str, abbrev: bool) -> Option<&'static OptSpec> {
    let opts: &'static [OptSpec] = grammar.opts;
    if let Some(o) = opts.iter().find(|o| o.long == Some(name)) {
        return Some(o);
    }
    if !abbrev || name.is_empty() {
        return None;
    }
    let mut found: Option<&'static OptSpec> = None;
    for o in opts {
        if o.long.is_some_and(|l| l.starts_with(name)) {
            match found {
                // getopt_long accepts an ambiguous prefix only when every candidate is the
                // same option; distinct entries are ambiguous and the program refuses it.
                Some(f) if f != o => return None,
                _ => found = Some(o),
            }
        }
    }
    found
}

/// `--name`, `--name=value`, `--name value` (and `-name…` for single-dash grammars).
/// Returns the index of the next word to read.
fn long_opt(
    grammar: &Grammar,
    args: &[Word],
    mut i: usize,
    w: &Word,
    body: &str,
    dash: &str,
    out: &mut Parsed,
) -> usize {
    let (name, glued) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    };
    let raw = format!("{dash}{name}");
    if w.dynamic && name.contains(is_dynamic_char) {
        out.unknown.push(w.text.clone());
        return i;
    }
    let abbrev = grammar.long_abbrev && dash == "--";
    let Some(spec) = lookup_long(grammar, name, abbrev) else {
        out.unknown.push(raw);
        return i;
    };
    let value = match (spec.arity, glued) {
        (Arity::Flag, Some(_)) => {
            // getopt refuses `--flag=x`; a program that does not must not be guessed at.
            out.unknown.push(w.text.clone());
            return i;
        }
        (Arity::Flag | Arity::Optional, None) => None,
        (_, Some(v)) => Some(sub_word(w, v)),
        (Arity::Required, None) => {
            let v = args.get(i).cloned();
            if v.is_some() {
                i += 1;
            }
            v
        }
    };
    out.opts.push(ParsedOpt { spec, value, raw });
    i
}

/// `-a`, `-abc`, `-oFILE`, `-o FILE`. Returns the index of the next word to read.
fn short_cluster(
    grammar: &Grammar,
    args: &[Word],
    mut i: usize,
    w: &Word,
    body: &str,
    out: &mut Parsed,
) -> usize {
    let opts: &'static [OptSpec] = grammar.opts;
    for (pos, c) in body.char_indices() {
        if pos > 0 && !grammar.clustering {
            // `-abc` in a grammar without clustering is one unknown option.
            out.unknown.push(w.text.clone());
            return i;
        }
        if w.dynamic && is_dynamic_char(c) {
            // `-$x`: the letters from here on are only known at run time.
            out.unknown.push(w.text.clone());
            return i;
        }
        let Some(spec) = opts.iter().find(|o| o.short == Some(c)) else {
            if !grammar.clustering {
                out.unknown.push(w.text.clone());
                return i;
            }
            out.unknown.push(format!("-{c}"));
            continue;
        };
        let rest = &body[pos + c.len_utf8()..];
        let raw = format!("-{c}");
        match spec.arity {
            Arity::Flag => out.opts.push(ParsedOpt {
                spec,
                value: None,
                raw,
            }),
            Arity::Optional => {
                let value = (!rest.is_empty()).then(|| sub_word(w, rest));
                out.opts.push(ParsedOpt { spec, value, raw });
                return i;
            }
            Arity::Required => {
                let value = if rest.is_empty() {
                    let v = args.get(i).cloned();
                    if v.is_some() {
                        i += 1;
                    }
                    v
                } else {
                    Some(sub_word(w, rest))
                };
                out.opts.push(ParsedOpt { spec, value, raw });
                return i;
            }
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use Arity::*;
    use Effect::*;

    const OPTS: &[OptSpec] = &[
        OptSpec::new(Some('n'), Some("quiet"), Flag, Plain),
        OptSpec::new(Some('n'), Some("silent"), Flag, Plain),
        OptSpec::new(Some('E'), Some("regexp-extended"), Flag, Plain),
        OptSpec::new(
            Some('i'),
            Some("in-place"),
            Optional,
            Dangerous("edits in place"),
        ),
        OptSpec::new(Some('o'), Some("output"), Required, WritesFile),
        OptSpec::new(None, Some("compress-program"), Required, RunsCode("runs")),
        OptSpec::new(None, Some("compress-level"), Required, Plain),
        OptSpec::new(None, Some("debug"), Flag, Plain),
        OptSpec::new(None, Some("debugger"), Flag, Plain),
    ];
    const GNU: Grammar = Grammar {
        opts: OPTS,
        long_abbrev: true,
        permute: true,
        single_dash_long: false,
        clustering: true,
    };
    const POSIX: Grammar = Grammar {
        permute: false,
        long_abbrev: false,
        ..GNU
    };
    const FIND_OPTS: &[OptSpec] = &[
        OptSpec::new(Some('H'), None, Flag, Plain),
        OptSpec::new(Some('L'), None, Flag, Plain),
        OptSpec::new(Some('O'), None, Optional, Plain),
        OptSpec::new(Some('D'), None, Required, Plain),
        OptSpec::new(None, Some("newer"), Required, ReadsFile),
        OptSpec::new(None, Some("fprint"), Required, WritesFile),
        OptSpec::new(None, Some("delete"), Flag, Dangerous("deletes")),
    ];
    const FIND: Grammar = Grammar {
        opts: FIND_OPTS,
        long_abbrev: false,
        permute: true,
        single_dash_long: true,
        clustering: false,
    };

    fn lit(s: &str) -> Word {
        Word::literal(s)
    }
    fn dynw(s: &str) -> Word {
        Word {
            text: s.to_string(),
            dynamic: true,
            substitution: false,
        }
    }
    fn words(line: &str) -> Vec<Word> {
        line.split_whitespace().map(lit).collect()
    }
    /// Options rendered as `long-or-short[=value]`, operands, unknown.
    fn render(p: &Parsed) -> (Vec<String>, Vec<String>, Vec<String>) {
        let opts = p
            .opts
            .iter()
            .map(|o| {
                let name = o.spec.long.map_or_else(
                    || o.spec.short.map(String::from).unwrap_or_default(),
                    str::to_string,
                );
                match &o.value {
                    Some(v) => format!("{name}={}", v.text),
                    None => name,
                }
            })
            .collect();
        let ops = p.operands.iter().map(|w| w.text.clone()).collect();
        (opts, ops, p.unknown.clone())
    }

    #[test]
    fn table() {
        type Row = (
            &'static str,
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
        );
        let rows: &[Row] = &[
            // clustering, in-place anywhere in the cluster
            (
                "-Ei s/a/b/ f",
                &["regexp-extended", "in-place"],
                &["s/a/b/", "f"],
                &[],
            ),
            ("-ni p f", &["quiet", "in-place"], &["p", "f"], &[]),
            ("-i.bak p f", &["in-place=.bak"], &["p", "f"], &[]),
            (
                "-Ei.bak p",
                &["regexp-extended", "in-place=.bak"],
                &["p"],
                &[],
            ),
            // optional argument is never taken from the next word
            ("-i .bak", &["in-place"], &[".bak"], &[]),
            ("--in-place .bak", &["in-place"], &[".bak"], &[]),
            ("--in-place=.bak x", &["in-place=.bak"], &["x"], &[]),
            // glued, separate, `=`
            ("-ofile x", &["output=file"], &["x"], &[]),
            ("-o file x", &["output=file"], &["x"], &[]),
            (
                "-Eo/root/.bashrc",
                &["regexp-extended", "output=/root/.bashrc"],
                &[],
                &[],
            ),
            ("--output=/x y", &["output=/x"], &["y"], &[]),
            ("--output /x y", &["output=/x"], &["y"], &[]),
            // a value that looks like an option is still the value
            ("-o -n x", &["output=-n"], &["x"], &[]),
            // abbreviations
            ("--compress-p=gzip", &["compress-program=gzip"], &[], &[]),
            ("--out=f", &["output=f"], &[], &[]),
            ("--comp=x", &[], &[], &["--comp"]),
            ("--compress=x", &[], &[], &["--compress"]),
            ("--s", &["silent"], &[], &[]),
            // exact match wins over being a prefix of another option
            ("--debug", &["debug"], &[], &[]),
            ("--debugg", &["debugger"], &[], &[]),
            // unknown options, short and long
            ("-X f", &[], &["f"], &["-X"]),
            ("-nXE f", &["quiet", "regexp-extended"], &["f"], &["-X"]),
            ("--nope=1", &[], &[], &["--nope"]),
            // a flag given a value is refused by getopt: unknown
            ("--debug=1", &[], &[], &["--debug=1"]),
            // permutation: options after operands still count
            ("p f -i", &["in-place"], &["p", "f"], &[]),
            ("p f --output=/x", &["output=/x"], &["p", "f"], &[]),
            // `--` ends options
            ("-n -- -i -o x", &["quiet"], &["-i", "-o", "x"], &[]),
            // `-` alone is an operand (stdin)
            ("-n - f", &["quiet"], &["-", "f"], &[]),
            // a missing required value
            ("-o", &["output"], &[], &[]),
        ];
        for (line, opts, ops, unknown) in rows {
            let got = render(&parse(&GNU, &words(line)));
            assert_eq!(
                got,
                (
                    opts.iter().map(std::string::ToString::to_string).collect(),
                    ops.iter().map(std::string::ToString::to_string).collect(),
                    unknown
                        .iter()
                        .map(std::string::ToString::to_string)
                        .collect()
                ),
                "{line}"
            );
        }
    }

    #[test]
    fn no_permutation_stops_at_first_operand() {
        let got = render(&parse(&POSIX, &words("-n p f -i")));
        assert_eq!(got.0, vec!["quiet"]);
        assert_eq!(got.1, vec!["p", "f", "-i"]);
        // and no abbreviation
        let got = render(&parse(&POSIX, &words("--out=x")));
        assert_eq!(got.2, vec!["--out"]);
    }

    #[test]
    fn single_dash_long() {
        let got = render(&parse(
            &FIND,
            &words("-L -O3 -D tree . -newer ref -fprint out -delete"),
        ));
        assert_eq!(
            got.0,
            vec!["L", "O=3", "D=tree", "newer=ref", "fprint=out", "delete"]
        );
        assert_eq!(got.1, vec!["."]);
        // no clustering and no abbreviation
        let got = render(&parse(&FIND, &words("-HL -del")));
        assert_eq!(got.2, vec!["-HL", "-del"]);
    }

    #[test]
    fn dynamic_words() {
        // A run-time word where an option could stand is unknown, and still an operand.
        let args = vec![lit("-n"), dynw("$x"), lit("f")];
        let p = parse(&GNU, &args);
        assert_eq!(p.unknown, vec!["$x"]);
        assert_eq!(p.operands.len(), 2);
        assert!(p.operands[0].dynamic);
        // A glob could match a file named `-i`.
        let p = parse(&GNU, &[dynw("*")]);
        assert_eq!(p.unknown, vec!["*"]);
        // A word with a literal non-dash start cannot be an option.
        let p = parse(&GNU, &[dynw("./$x"), dynw("dir/*")]);
        assert!(p.unknown.is_empty());
        assert_eq!(p.operands.len(), 2);
        // After `--` nothing is an option.
        let p = parse(&GNU, &[lit("--"), dynw("$x")]);
        assert!(p.unknown.is_empty());
        // A known letter with a run-time value: the option is known, its value is dynamic.
        let p = parse(&GNU, &[dynw("-o$HOME/.bashrc")]);
        assert!(p.unknown.is_empty());
        let v = p.opts[0].value.as_ref().expect("value");
        assert_eq!(v.text, "$HOME/.bashrc");
        assert!(v.dynamic);
        let p = parse(&GNU, &[dynw("--output=$f")]);
        assert_eq!(p.opts[0].spec.long, Some("output"));
        assert!(p.opts[0].value.as_ref().is_some_and(|v| v.dynamic));
        // Letters only known at run time are unknown.
        let p = parse(&GNU, &[dynw("-n$x")]);
        assert_eq!(p.opts.len(), 1);
        assert_eq!(p.unknown, vec!["-n$x"]);
        let p = parse(&GNU, &[dynw("--$x=1")]);
        assert_eq!(p.unknown, vec!["--$x=1"]);
        // A dynamic value word after a required option is the value, not an option.
        let p = parse(&GNU, &[lit("-o"), dynw("$x")]);
        assert!(p.unknown.is_empty());
        assert!(p.opts[0].value.as_ref().is_some_and(|v| v.dynamic));
    }

    #[test]
    fn same_spec_under_two_prefixes_is_not_ambiguous() {
        const O: &[OptSpec] = &[OptSpec::new(None, Some("files-from"), Required, ReadsFile)];
        let g = Grammar { opts: O, ..GNU };
        let p = parse(&g, &words("--files=x"));
        assert_eq!(p.opts.len(), 1);
        assert!(p.find("files-from").next().is_some());
        assert!(p.has("files-from"));
        assert!(!p.has_short('f'));
    }
}
