//! Words the parser could not resolve (`$HOME/x`, `${f}`, `~root/x`, `~+/x`, `src/*.rs`,
//! `{a,b}`) expanded where that is sound, the way bash would at run time:
//!
//! - brace expansion, then tilde expansion (`~` the session's home, `~+` every directory the
//!   command may run in, `~user` from the password database);
//! - parameters the session knows (`$HOME`, `$PWD`) and variables the command line itself
//!   assigns (`f=x; cat $f`, `for f in src/*.rs`), each value taken as a glob (an unquoted
//!   value is globbed and split by bash; taking every value that way only adds candidates);
//! - globs matched against the file system at judgment time, with a cap on directory entries
//!   read and paths produced.
//!
//! Anything else (`~-`, command substitutions, arithmetic, positional parameters, variables
//! from the environment, values read at run time) makes the word [`Expansion::Unknown`]: the
//! engine never lets an allow rule cover it.

use std::path::{Path, PathBuf};

use globset::GlobBuilder;

use crate::shell::Word;

/// Most paths one word may expand to before it is judged as unknown.
const MAX_PATHS: usize = 256;
/// Most directory entries read while globbing one word.
const MAX_ENTRIES: usize = 4096;
/// Deepest chain of variables whose values are themselves expanded (`a=$b; b=$c`).
const MAX_DEPTH: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expansion {
    /// Every path (or plain string) the word may stand for.
    Paths(Vec<String>),
    /// Only known at run time, and why.
    Unknown(String),
}

/// What expansion may consult.
pub struct Env<'a> {
    pub home: &'a Path,
    pub cwds: &'a [PathBuf],
    /// Variables the command line assigns: `None` for a value only known at run time.
    pub vars: &'a [(String, Option<Word>)],
}

/// Does `w` need expanding before it can be judged as a path?
pub fn needs_expansion(w: &Word) -> bool {
    w.dynamic || (w.text.starts_with('~') && !(w.text == "~" || w.text.starts_with("~/")))
}

/// Expands a word (its `text`: for a dynamic word, shell syntax with literal parts escaped).
pub fn expand(w: &Word, env: &Env<'_>) -> Expansion {
    match expand_text(&w.text, env, 0) {
        Ok(v) => Expansion::Paths(v),
        Err(why) => Expansion::Unknown(why),
    }
}

fn expand_text(text: &str, env: &Env<'_>, depth: u32) -> Result<Vec<String>, String> {
    if depth > MAX_DEPTH {
        return Err("variables nest too deeply".into());
    }
    // Each expansion is one level of recursion below; a word with dozens is not a path.
    if text.matches('$').count() > 16 || text.matches('{').count() > 16 {
        return Err("it has too many expansions to follow".into());
    }
    let mut out = Vec::new();
    for braced in braces(text)? {
        for tilded in tilde(&braced, env)? {
            for pattern in parameters(&tilded, env, depth)? {
                // Unquoted values are split at blanks by bash: each piece is a candidate too.
                let mut pieces = vec![pattern.clone()];
                if has_unescaped(&pattern, &[' ', '\t', '\n']) {
                    pieces.extend(split_unescaped(&pattern));
                }
                for p in pieces {
                    out.extend(glob(&p, env)?);
                    if out.len() > MAX_PATHS {
                        return Err(format!("it may name more than {MAX_PATHS} files"));
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn has_unescaped(s: &str, set: &[char]) -> bool {
    let mut esc = false;
    for c in s.chars() {
        if esc {
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if set.contains(&c) {
            return true;
        }
    }
    false
}

fn split_unescaped(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut esc = false;
    for c in s.chars() {
        if esc {
            esc = false;
            if let Some(l) = out.last_mut() {
                l.push('\\');
                l.push(c);
            }
        } else if c == '\\' {
            esc = true;
        } else if c.is_whitespace() {
            out.push(String::new());
        } else if let Some(l) = out.last_mut() {
            l.push(c);
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Byte index of the `}` closing the `{` at `open`, and the top-level commas between.
fn brace_group(s: &[u8], open: usize) -> Option<(usize, Vec<usize>)> {
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut i = open;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((i, commas));
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Brace expansion: `a{b,c}d` → `abd`, `acd`. `{x}` and `{}` stay literal; sequences
/// (`{1..3}`) are not modelled.
fn braces(text: &str) -> Result<Vec<String>, String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'$' if b.get(i + 1) == Some(&b'{') => {
                // A parameter expansion, not a brace group.
                if let Some((close, _)) = brace_group(b, i + 1) {
                    i = close;
                }
            }
            b'{' => {
                if let Some((close, commas)) = brace_group(b, i) {
                    let inner = &text[i + 1..close];
                    if commas.is_empty() {
                        if inner.contains("..") {
                            return Err("it uses a brace sequence".into());
                        }
                        i = close;
                    } else {
                        let mut alts = Vec::new();
                        let mut start = i + 1;
                        for c in commas.iter().copied().chain([close]) {
                            alts.push(&text[start..c]);
                            start = c + 1;
                        }
                        let (pre, post) = (&text[..i], &text[close + 1..]);
                        let mut out = Vec::new();
                        for a in alts {
                            out.extend(braces(&format!("{pre}{a}{post}"))?);
                            if out.len() > MAX_PATHS {
                                return Err(format!("it may name more than {MAX_PATHS} files"));
                            }
                        }
                        return Ok(out);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(vec![text.to_string()])
}

fn escape(lit: &str) -> String {
    let mut s = String::with_capacity(lit.len());
    for c in lit.chars() {
        if matches!(
            c,
            '\\' | '$' | '*' | '?' | '[' | ']' | '{' | '}' | '~' | '`' | '\'' | '"' | ' ' | '\t'
        ) {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        if !esc && c == '\\' {
            esc = true;
            continue;
        }
        esc = false;
        out.push(c);
    }
    out
}

/// Tilde prefix: `~`, `~/x`, `~+`, `~user`.
fn tilde(text: &str, env: &Env<'_>) -> Result<Vec<String>, String> {
    let Some(rest) = text.strip_prefix('~') else {
        return Ok(vec![text.to_string()]);
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (user, tail) = rest.split_at(end);
    let dirs: Vec<String> = match user {
        "" => vec![env.home.display().to_string()],
        "+" => env.cwds.iter().map(|c| c.display().to_string()).collect(),
        "-" => return Err("`~-` is the previous directory, only known at run time".into()),
        u if u
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
        {
            match home_of(u) {
                Some(h) => vec![h],
                // bash leaves an unknown `~user` as it is: a relative path.
                None => return Ok(vec![text.to_string()]),
            }
        }
        _ => return Err(format!("`~{user}` is only resolved at run time")),
    };
    Ok(dirs.into_iter().map(|d| escape(&d) + tail).collect())
}

/// A user's home directory from the password database.
fn home_of(user: &str) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[0] == user).then(|| f[5].to_string())
    })
}

/// `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}` with known values; anything else is
/// unknown.
fn parameters(text: &str, env: &Env<'_>, depth: u32) -> Result<Vec<String>, String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'`' => return Err("it contains a command substitution".into()),
            b'$' => {
                let (name, default, end) = parameter_at(text, i)?;
                let mut values = value_of(&name, env, depth)?;
                if values.is_empty() {
                    values.push(String::new());
                }
                if let Some(d) = default {
                    // The default applies when the variable is unset or empty.
                    values.extend(expand_text(&d, env, depth + 1)?.iter().map(|v| escape(v)));
                }
                let (pre, post) = (&text[..i], &text[end..]);
                let mut out = Vec::new();
                for rest in parameters(post, env, depth)? {
                    for v in &values {
                        out.push(format!("{pre}{v}{rest}"));
                        if out.len() > MAX_PATHS {
                            return Err(format!("it may name more than {MAX_PATHS} files"));
                        }
                    }
                }
                return Ok(out);
            }
            _ => i += 1,
        }
    }
    Ok(vec![text.to_string()])
}

/// The parameter starting at byte `i` (a `$`): name, `:-` default, end index.
fn parameter_at(text: &str, i: usize) -> Result<(String, Option<String>, usize), String> {
    let rest = &text[i + 1..];
    let ident = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let n = ident(rest);
        return Ok((rest[..n].to_string(), None, i + 1 + n));
    }
    if let Some(inner_start) = rest.strip_prefix('{') {
        let n = ident(inner_start);
        let name = &inner_start[..n];
        let after = &inner_start[n..];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("`${{{inner_start}` is only known at run time"));
        }
        let close = brace_group(text.as_bytes(), i + 1)
            .map(|(c, _)| c)
            .ok_or_else(|| "an unterminated parameter expansion".to_string())?;
        let body = &text[i + 2 + n..close];
        let default = if body.is_empty() {
            None
        } else {
            let d = body
                .strip_prefix(":-")
                .or_else(|| body.strip_prefix('-'))
                .ok_or_else(|| format!("`${{{name}{after}` is only known at run time"))?;
            Some(d.to_string())
        };
        return Ok((name.to_string(), default, close + 1));
    }
    Err(format!(
        "`${}` is only known at run time",
        rest.chars().take(12).collect::<String>()
    ))
}

/// Values a variable may have, as glob syntax.
fn value_of(name: &str, env: &Env<'_>, depth: u32) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut known_from_session = true;
    match name {
        "HOME" => out.push(escape(&env.home.display().to_string())),
        "PWD" => out.extend(env.cwds.iter().map(|c| escape(&c.display().to_string()))),
        _ => known_from_session = false,
    }
    let mut bound = false;
    for (n, v) in env.vars {
        if n != name {
            continue;
        }
        bound = true;
        match v {
            None => {
                return Err(format!(
                    "`${name}` is set from a value only known at run time"
                ))
            }
            Some(w) if !w.dynamic => out.push(w.text.clone()),
            Some(w) => out.extend(
                expand_text(&w.text, env, depth + 1)?
                    .iter()
                    .map(|v| escape(v)),
            ),
        }
    }
    if !bound && !known_from_session {
        return Err(format!("`${name}` comes from the environment at run time"));
    }
    Ok(out)
}

/// Glob matching against the file system; a pattern that matches nothing stays literal, as in
/// bash.
fn glob(pattern: &str, env: &Env<'_>) -> Result<Vec<String>, String> {
    if !has_unescaped(pattern, &['*', '?', '[']) {
        return Ok(vec![unescape(pattern)]);
    }
    let absolute = pattern.starts_with('/');
    let bases: Vec<PathBuf> = if absolute {
        vec![PathBuf::from("/")]
    } else {
        env.cwds.to_vec()
    };
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let mut budget = MAX_ENTRIES;
    let mut out = Vec::new();
    for base in bases {
        let mut current = vec![base];
        for comp in &comps {
            let mut next = Vec::new();
            if !has_unescaped(comp, &['*', '?', '[']) {
                let lit = unescape(comp);
                next.extend(current.iter().map(|d| d.join(&lit)));
            } else {
                let matcher = GlobBuilder::new(comp)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|_| format!("`{pattern}` is not a pattern agp can expand"))?
                    .compile_matcher();
                for dir in &current {
                    if comp.starts_with('.') || comp.starts_with("\\.") {
                        // `.*` also matches `.` and `..`.
                        for special in [".", ".."] {
                            if matcher.is_match(special) {
                                next.push(dir.join(special));
                            }
                        }
                    }
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    for e in entries.flatten() {
                        budget = budget.checked_sub(1).ok_or_else(|| {
                            format!("`{pattern}` matches too many files to judge")
                        })?;
                        // Dot files are included even when bash would skip them (dotglob may
                        // be set): more candidates only make the judgment stricter.
                        if matcher.is_match(e.file_name()) {
                            next.push(dir.join(e.file_name()));
                        }
                    }
                }
            }
            if next.len() > MAX_PATHS {
                return Err(format!("`{pattern}` matches more than {MAX_PATHS} files"));
            }
            current = next;
        }
        out.extend(
            current
                .into_iter()
                .filter(|p| p.symlink_metadata().is_ok())
                .map(|p| p.display().to_string()),
        );
    }
    if out.is_empty() {
        out.push(unescape(pattern));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str, dynamic: bool) -> Word {
        Word {
            text: text.into(),
            dynamic,
            substitution: false,
        }
    }

    #[test]
    fn expands_known_values_and_refuses_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("h");
        std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
        std::fs::write(home.join(".ssh/id_rsa"), "k").expect("write");
        let cwds = vec![dir.path().to_path_buf()];
        let vars = vec![
            ("f".to_string(), Some(w("src/a.rs", false))),
            ("g".to_string(), None),
        ];
        let env = Env {
            home: &home,
            cwds: &cwds,
            vars: &vars,
        };
        let h = home.display().to_string();
        assert_eq!(
            expand(&w("$HOME/.ssh/id_rsa", true), &env),
            Expansion::Paths(vec![format!("{h}/.ssh/id_rsa")])
        );
        assert_eq!(
            expand(&w("${HOME}/.ss?/id_*", true), &env),
            Expansion::Paths(vec![format!("{h}/.ssh/id_rsa")])
        );
        assert_eq!(
            expand(&w("~/{.ssh,.aws}/x", true), &env),
            Expansion::Paths(vec![format!("{h}/.aws/x"), format!("{h}/.ssh/x")])
        );
        assert_eq!(
            expand(&w("$f", true), &env),
            Expansion::Paths(vec!["src/a.rs".into()])
        );
        // A quoted `*` stays literal.
        assert_eq!(
            expand(&w("$f\\*", true), &env),
            Expansion::Paths(vec!["src/a.rs*".into()])
        );
        for unknown in ["$g", "$X/y", "$(id)", "~-/x", "${HOME%/}", "$1", "${!x}"] {
            assert!(
                matches!(expand(&w(unknown, true), &env), Expansion::Unknown(_)),
                "{unknown}"
            );
        }
        assert!(needs_expansion(&w("~root/x", false)));
        assert!(!needs_expansion(&w("~/x", false)));
    }
}
