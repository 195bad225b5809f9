//! `sed` (GNU sed 4.9, with BSD's `-i SUFFIX`/`-I`): options, and the script itself, which can
//! run commands (`e`, `s///e`), read files (`r`, `R`) and write files (`w`, `W`, `s///w`).

use super::grammar::{parse, Grammar, OptSpec};
use super::spec::{f, gnu, inline_program, ov, v};
use super::Effects;
use crate::shell::Word;

const OPTS: &[OptSpec] = &[
    f('n', "quiet"),
    f(' ', "silent"),
    f(' ', "debug"),
    v('e', "expression"),
    v('f', "file"),
    f(' ', "follow-symlinks"),
    ov('i', "in-place"),
    // BSD: in-place with a mandatory suffix word.
    v('I', ""),
    v('l', "line-length"),
    f(' ', "posix"),
    f('E', "regexp-extended"),
    f('r', ""),
    f('s', "separate"),
    f(' ', "sandbox"),
    f('u', "unbuffered"),
    f('z', "null-data"),
    // BSD: delay opening files.
    f('a', ""),
    f(' ', "help"),
    f(' ', "version"),
];

const SED: Grammar = gnu(OPTS);

/// What a sed script does besides editing its input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScriptEffects {
    /// Reasons: `e`, `s///e`, or a script that could not be parsed.
    pub code: Vec<String>,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
}

/// The sed model.
pub fn sed(args: &[Word]) -> Effects {
    let parsed = parse(&SED, args);
    let mut fx = Effects::default();
    fx.unknown_options("sed", &parsed);
    let sandbox = parsed.has("sandbox");
    let in_place = parsed.has("in-place") || parsed.has_short('I');
    let mut script = String::new();
    let mut explicit = false;
    for o in &parsed.opts {
        match o.spec.long {
            Some("expression") => {
                explicit = true;
                match &o.value {
                    Some(v) if !v.dynamic => {
                        script.push_str(&v.text);
                        script.push('\n');
                    }
                    _ => fx.code("the sed script is only known at run time"),
                }
            }
            Some("file") => {
                explicit = true;
                let Some(v) = &o.value else { continue };
                if sandbox {
                    // --sandbox rejects e, r and w: the unseen script can only edit its input.
                    if v.text != "-" {
                        fx.reads.push(v.clone());
                    }
                } else {
                    fx.code(format!(
                        "sed runs a script from `{}` that agp cannot see (it may use `e`, `r` or `w`)",
                        v.text
                    ));
                }
            }
            _ => {}
        }
    }
    let mut files: &[Word] = &parsed.operands;
    if !explicit {
        let Some(rest) = inline_program(files, "the sed script", &mut script, &mut fx) else {
            return fx;
        };
        files = rest;
        // BSD `sed -i '' SCRIPT FILE`: the word after `-i` is a suffix and the next one the
        // script. Judge that reading too.
        let bare_i = parsed
            .opts
            .iter()
            .any(|o| o.spec.long == Some("in-place") && o.value.is_none());
        let suffix = parsed
            .operands
            .first()
            .is_some_and(|first| first.text.is_empty() || first.text.starts_with('.'));
        if bare_i && suffix {
            if let Some(second) = rest.first() {
                script.push('\n');
                script.push_str(&second.text);
                if second.dynamic {
                    fx.code("the sed script is only known at run time");
                }
            }
        }
    }
    let se = script_effects(&script);
    if !sandbox {
        fx.code.extend(se.code);
        fx.reads.extend(se.reads.into_iter().map(Word::literal));
        fx.writes.extend(se.writes.into_iter().map(Word::literal));
    } else if se.code.iter().any(|c| c.contains("could not be parsed")) {
        fx.code.extend(se.code);
    }
    for f in files {
        if f.text == "-" && !f.dynamic {
            continue;
        }
        fx.reads.push(f.clone());
        if in_place {
            fx.writes.push(f.clone());
        }
    }
    fx
}

/// Reads a sed script the way GNU sed's compiler does and reports `e`, `r`/`R`, `w`/`W` and
/// the `e`/`w` flags of `s`. A script it cannot follow is reported as code.
pub fn script_effects(script: &str) -> ScriptEffects {
    let mut out = ScriptEffects::default();
    if Parser::new(script, &mut out).run().is_none() {
        out.code.push(format!(
            "the sed script `{}` could not be parsed, so what it runs cannot be judged",
            short(script)
        ));
    }
    out
}

fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

struct Parser<'a, 'o> {
    s: &'a [u8],
    i: usize,
    out: &'o mut ScriptEffects,
}

impl<'a, 'o> Parser<'a, 'o> {
    fn new(script: &'a str, out: &'o mut ScriptEffects) -> Self {
        Self {
            s: script.as_bytes(),
            i: 0,
            out,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// The rest of the line (file names, `e` commands, text of `a`/`i`/`c`).
    fn rest_of_line(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(|c| c != b'\n') {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// Skips a delimited part (`/re/`, or the parts of `s` and `y`) ending at `delim`.
    fn delimited(&mut self, delim: u8) -> Option<()> {
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                c if c == delim => {
                    self.i += 1;
                    return Some(());
                }
                b'\n' if delim != b'\n' => {
                    // A raw newline ends the command in GNU sed (only `\` + newline continues).
                    return None;
                }
                _ => self.i += 1,
            }
        }
    }

    fn number(&mut self) -> bool {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i > start
    }

    fn address(&mut self) -> Option<bool> {
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                self.number();
                if self.peek() == Some(b'~') {
                    self.i += 1;
                    self.number();
                }
            }
            Some(b'$') => self.i += 1,
            Some(b'/') => {
                self.i += 1;
                self.delimited(b'/')?;
                self.regex_flags();
            }
            Some(b'\\') => {
                let d = *self.s.get(self.i + 1)?;
                if d == b'\n' || d == b'\\' {
                    return None;
                }
                self.i += 2;
                self.delimited(d)?;
                self.regex_flags();
            }
            _ => return Some(false),
        }
        Some(true)
    }

    fn regex_flags(&mut self) {
        while matches!(self.peek(), Some(b'I' | b'M')) {
            self.i += 1;
        }
    }

    fn run(&mut self) -> Option<()> {
        loop {
            // Separators between commands.
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b';')) {
                self.i += 1;
            }
            let Some(_) = self.peek() else {
                return Some(());
            };
            if self.address()? {
                self.skip_ws();
                if self.peek() == Some(b',') {
                    self.i += 1;
                    self.skip_ws();
                    match self.peek() {
                        Some(b'+' | b'~') => {
                            self.i += 1;
                            if !self.number() {
                                return None;
                            }
                        }
                        _ => {
                            if !self.address()? {
                                return None;
                            }
                        }
                    }
                }
            }
            self.skip_ws();
            while self.peek() == Some(b'!') {
                self.i += 1;
                self.skip_ws();
            }
            let c = self.peek()?;
            self.i += 1;
            match c {
                // A block's first command may follow `{` directly.
                b'{' => continue,
                b'}' | b'=' | b'd' | b'D' | b'g' | b'G' | b'h' | b'H' | b'n' | b'N' | b'p'
                | b'P' | b'x' | b'z' | b'F' => {}
                b'#' => {
                    self.rest_of_line();
                }
                b'q' | b'Q' | b'l' | b'L' => {
                    self.skip_ws();
                    self.number();
                }
                b':' => {
                    self.skip_ws();
                    let label = self.label();
                    if label.is_empty() {
                        return None;
                    }
                }
                b'b' | b't' | b'T' | b'v' => {
                    self.skip_ws();
                    self.label();
                }
                b'a' | b'i' | b'c' => self.text()?,
                b'r' | b'R' => {
                    let f = self.filename()?;
                    self.out.reads.push(f);
                }
                b'w' | b'W' => {
                    let f = self.filename()?;
                    self.out.writes.push(f);
                }
                b'e' => {
                    self.skip_ws();
                    let cmd = self.rest_of_line();
                    self.out.code.push(if cmd.trim().is_empty() {
                        "the sed `e` command runs the pattern space as a shell command".into()
                    } else {
                        format!("the sed `e` command runs `{}`", short(&cmd))
                    });
                }
                b's' => self.substitute()?,
                b'y' => self.two_parts()?,
                _ => return None,
            }
            // After a command: blanks, then `;`, a newline, `}` or `#`.
            self.skip_ws();
            match self.peek() {
                None | Some(b';' | b'\n' | b'}' | b'#') => {}
                _ => return None,
            }
        }
    }

    /// A label runs to `;` or the end of the line.
    fn label(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(|c| c != b'\n' && c != b';') {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i])
            .trim()
            .to_string()
    }

    /// `r`/`w` file names run to the end of the line (`;` and `}` included).
    fn filename(&mut self) -> Option<String> {
        self.skip_ws();
        let f = self.rest_of_line();
        (!f.is_empty()).then_some(f)
    }

    /// Text of `a`, `i`, `c`: `a\` + newline + lines ending in `\`, or GNU's one-line form.
    fn text(&mut self) -> Option<()> {
        self.skip_ws();
        if self.peek() == Some(b'\\') {
            self.i += 1;
            self.skip_ws();
            if self.peek() == Some(b'\n') {
                self.i += 1;
            }
        }
        loop {
            match self.peek() {
                None => return Some(()),
                Some(b'\\') => self.i += 2,
                Some(b'\n') => return Some(()),
                _ => self.i += 1,
            }
        }
    }

    /// The two delimited parts of `s/RE/REPLACEMENT/` and `y/SRC/DST/`; any delimiter but a
    /// newline or a backslash.
    fn two_parts(&mut self) -> Option<()> {
        let d = self.peek()?;
        if d == b'\n' || d == b'\\' {
            return None;
        }
        self.i += 1;
        self.delimited(d)?;
        self.delimited(d)
    }

    fn substitute(&mut self) -> Option<()> {
        self.two_parts()?;
        loop {
            match self.peek() {
                Some(b'g' | b'p' | b'i' | b'I' | b'm' | b'M') => self.i += 1,
                Some(c) if c.is_ascii_digit() => self.i += 1,
                Some(b'e') => {
                    self.i += 1;
                    self.out
                        .code
                        .push("the sed `s///e` flag runs the result as a shell command".into());
                }
                Some(b'w') => {
                    self.i += 1;
                    let f = self.filename()?;
                    self.out.writes.push(f);
                    return Some(());
                }
                _ => return Some(()),
            }
        }
    }
}

super::spec::model_cases! { "cases/sed.cases";
    scripts: "sed scripts" => Script(|s| {
        let se = super::script_effects(s);
        cases::Seen::script(se.code, se.reads, se.writes)
    }),
    invocations: "sed" => Model(super::sed);

    use crate::shell::Word;

    #[test]
    fn a_dynamic_script_is_code() {
        let dynamic = Word {
            text: "$S".into(),
            dynamic: true,
            substitution: false,
        };
        assert!(!super::sed(&[Word::literal("-n"), Word::literal("-e"), dynamic])
            .code
            .is_empty());
    }
}
