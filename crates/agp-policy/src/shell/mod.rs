//! Shell commands are parsed, not pattern-matched as text.
//!
//! A command line is parsed with tree-sitter-bash and flattened into [`Part`]s: every simple
//! command (after stripping wrappers such as `env`, `timeout`, `sudo`, and seeing through
//! `xargs`, `find -exec` and `sh -c`), every file a redirection writes or reads, and every piece
//! that cannot be judged statically. The engine judges each part; the call gets the strictest
//! verdict.

mod env;
mod eval;
mod normalize;
mod syntax;
mod unmodeled;
mod walk;
mod words;
mod wrappers;

pub use env::{dangerous_env, prints_environment};

pub use normalize::basename;
pub use words::Word;

pub(crate) use syntax::{kind, node_text};
pub(crate) use walk::Walker;

/// How deep `sh -c '…'`, `eval`, here-docs and `env -S` may nest before we give up (fail closed).
const MAX_DEPTH: u32 = 6;
/// Deepest syntax tree we walk (recursively); deeper ones are judged as unparseable.
const MAX_NESTING: usize = 120;
/// Longest command line we parse; longer ones are judged as unparseable.
const MAX_LEN: usize = 256 * 1024;

/// One simple command after wrapper stripping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// `argv[0]` is the command as typed (quotes and backslashes removed).
    pub argv: Vec<Word>,
    /// Wrappers that were stripped (`sudo`, `env`, `xargs`, `find -exec`, ...), outermost first.
    pub wrappers: Vec<String>,
    /// Names of environment variables set for this command (prefix assignments, `env A=b`).
    pub env: Vec<String>,
    /// `xargs` appends arguments only known at run time.
    pub dynamic_tail: bool,
    /// The command runs in another directory (`env -C DIR`, `sudo -D DIR`).
    pub chdir: Option<Word>,
}

impl SimpleCommand {
    /// The program's base name: `/bin/rm` and `rm` are both `rm`.
    pub fn name(&self) -> &str {
        self.argv.first().map_or("", |w| basename(&w.text))
    }
    /// Arguments after the program name.
    pub fn args(&self) -> &[Word] {
        self.argv.get(1..).unwrap_or(&[])
    }
    /// The command as one line of normalized words (what `Bash(...)` rules match).
    pub fn line(&self) -> String {
        let mut s = String::new();
        for (i, w) in self.argv.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&w.text);
        }
        s
    }
    /// Same as [`line`](Self::line) with the program reduced to its base name.
    pub fn line_with_basename(&self) -> String {
        let mut s = String::from(self.name());
        for w in self.args() {
            s.push(' ');
            s.push_str(&w.text);
        }
        s
    }
}

/// One thing a command line does that the policy judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Command(SimpleCommand),
    /// A redirection (or a command like `tee`, `cp`) writes this path.
    Write {
        path: Word,
        via: String,
    },
    /// A redirection reads this path (`< file`).
    Read {
        path: Word,
        via: String,
    },
    /// Project tooling pointed at code or configuration at this path (`--manifest-path`,
    /// `-C DIR`, a config file): judged as outside the project unless the path is inside it.
    Foreign {
        path: Word,
        via: String,
    },
    /// Something that cannot be judged statically; never allowed.
    Opaque {
        text: String,
        reason: String,
    },
}

impl Part {
    /// A part that cannot be judged statically; its text is cut to 200 bytes for findings.
    pub(crate) fn opaque(text: &str, reason: impl Into<String>) -> Self {
        let mut text = text.trim().to_string();
        if text.len() > 200 {
            let mut cut = 200;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        Part::Opaque {
            text,
            reason: reason.into(),
        }
    }

    /// Short text naming the part (for findings and `explain`).
    pub fn label(&self) -> String {
        match self {
            Part::Command(c) => c.line(),
            Part::Write { path, .. } => format!("write:{}", path.text),
            Part::Read { path, .. } => format!("read:{}", path.text),
            Part::Foreign { path, .. } => format!("foreign:{}", path.text),
            Part::Opaque { text, .. } => text.clone(),
        }
    }
}

/// Data flowing from some commands into another (pipelines, `$(...)`, `<(...)`): used to spot
/// download-and-execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub producers: Vec<usize>,
    pub consumers: Vec<usize>,
}

/// Everything a command line does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    pub parts: Vec<Part>,
    pub feeds: Vec<Feed>,
    /// A function that calls itself in the background or a pipeline (`:(){ :|:& };:`).
    pub fork_bomb: bool,
    /// Variables the command line assigns, in order: the value, or `None` when it is only
    /// known at run time (`read f`, a prefix assignment's outer value, `for f;`).
    pub bindings: Vec<(String, Option<Word>)>,
}

impl Analysis {
    pub fn commands(&self) -> impl Iterator<Item = (usize, &SimpleCommand)> {
        self.parts.iter().enumerate().filter_map(|(i, p)| match p {
            Part::Command(c) => Some((i, c)),
            _ => None,
        })
    }
}

/// Parses a command line into parts. Never fails: what cannot be parsed becomes an
/// [`Part::Opaque`].
pub fn analyze(command: &str) -> Analysis {
    let mut walker = Walker {
        out: Analysis::default(),
    };
    walker.analyze_source(command, 0);
    let mut code = Vec::new();
    for part in &walker.out.parts {
        if let Part::Command(c) = part {
            for name in eval::names_set_at_run_time(c) {
                walker.out.bindings.push((name, None));
            }
            if let Some(reason) = eval::command_evaluates_code(c) {
                code.push(Part::Opaque {
                    text: c.line(),
                    reason,
                });
            }
        }
    }
    walker.out.parts.extend(code);
    walker.out
}

/// Shells that run their `-c` argument or their standard input as code.
pub fn is_shell(name: &str) -> bool {
    matches!(
        name,
        "sh" | "bash"
            | "zsh"
            | "dash"
            | "ksh"
            | "mksh"
            | "ash"
            | "fish"
            | "csh"
            | "tcsh"
            | "busybox"
    )
}

/// Programs that run code given on their command line or standard input.
pub fn is_interpreter(name: &str) -> bool {
    is_shell(name)
        || name.starts_with("python")
        || name.starts_with("pypy")
        || matches!(
            name,
            "node"
                | "nodejs"
                | "deno"
                | "bun"
                | "perl"
                | "ruby"
                | "php"
                | "lua"
                | "luajit"
                | "Rscript"
                | "osascript"
                | "pwsh"
                | "powershell"
                | "tclsh"
                | "irb"
                | "jshell"
                | "source"
                | "."
                | "eval"
        )
}

#[cfg(test)]
mod tests;
