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
mod words;

pub use env::{dangerous_env, prints_environment};

use std::cell::RefCell;

use tree_sitter::{Node, Parser};

pub use normalize::basename;
pub use words::Word;

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

thread_local! {
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
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

fn parse(src: &str) -> Option<tree_sitter::Tree> {
    PARSER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut parser = Parser::new();
            parser
                .set_language(&tree_sitter_bash::LANGUAGE.into())
                .ok()?;
            *slot = Some(parser);
        }
        let parser = slot.as_mut()?;
        parser.reset();
        if src.is_ascii() {
            return parser.parse(src, None);
        }
        // tree-sitter-bash's scanner passes the lookahead code point to C's `isdigit`, which
        // reads out of bounds (and crashes the process) for large code points. Bash treats
        // non-ASCII characters as ordinary word characters, so each is parsed as the same
        // number of ASCII letters: byte offsets, and so every node's text taken from `src`,
        // stay the same.
        let ascii: String = src
            .chars()
            .flat_map(|c| {
                let n = if c.is_ascii() { 0 } else { c.len_utf8() };
                let keep = c.is_ascii().then_some(c);
                keep.into_iter().chain(std::iter::repeat_n('x', n))
            })
            .collect();
        parser.parse(&ascii, None)
    })
}

pub(crate) struct Walker {
    pub(crate) out: Analysis,
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

impl Walker {
    pub(crate) fn opaque(&mut self, text: &str, reason: impl Into<String>) {
        let mut text = text.trim().to_string();
        if text.len() > 200 {
            let mut cut = 200;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        self.out.parts.push(Part::Opaque {
            text,
            reason: reason.into(),
        });
    }

    pub(crate) fn analyze_source(&mut self, src: &str, depth: u32) {
        if depth > MAX_DEPTH {
            self.opaque(src, "commands nested too deeply to judge");
            return;
        }
        if src.len() > MAX_LEN {
            self.opaque(src, "command line too long to judge");
            return;
        }
        let Some(tree) = parse(src) else {
            self.opaque(src, "the shell parser could not run");
            return;
        };
        let root = tree.root_node();
        // The walk below recurses; a pathological `((((…))))` must not overflow the stack.
        // A tree with no more nodes than the limit cannot nest deeper than it; the node count
        // is stored in the tree, so typical commands skip the depth walk.
        if root.descendant_count() > MAX_NESTING && max_depth(root) > MAX_NESTING {
            self.opaque(src, "the command is nested too deeply to judge");
            return;
        }
        if root.has_error() {
            self.opaque(src, "the command does not parse as shell");
        }
        eval::scan_tree(root, src, &mut self.out.parts);
        self.walk(root, src, depth);
    }

    fn walk(&mut self, node: Node<'_>, src: &str, depth: u32) {
        match kind(node) {
            "command" => {
                self.command(node, src, depth);
            }
            "redirected_statement" => self.redirected(node, src, depth),
            "pipeline" => self.pipeline(node, src, depth),
            "file_redirect" | "heredoc_redirect" | "herestring_redirect" => {
                self.redirect(node, src, depth, None);
            }
            "function_definition" => {
                if is_fork_bomb(node, src) {
                    self.out.fork_bomb = true;
                }
                self.walk_children(node, src, depth);
            }
            "variable_assignment" => {
                self.assignment(node, src);
                self.bind(node, src);
                self.walk_children(node, src, depth);
            }
            "for_statement" => {
                if let Some(var) = field(node, grammar().variable) {
                    let name = node_text(var, src).to_string();
                    let mut cursor = node.walk();
                    let values: Vec<Word> = node
                        .children_by_field_name("value", &mut cursor)
                        .map(|v| words::word_of(v, src))
                        .collect();
                    if values.is_empty() {
                        // `for f; do`: the positional parameters.
                        self.out.bindings.push((name.clone(), None));
                    }
                    for v in values {
                        self.out.bindings.push((name.clone(), Some(v)));
                    }
                }
                self.walk_children(node, src, depth);
            }
            "comment" => {}
            _ => self.walk_children(node, src, depth),
        }
    }

    fn walk_children(&mut self, node: Node<'_>, src: &str, depth: u32) {
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            self.walk(child, src, depth);
        }
    }

    /// Records `name=value` so later expansions of `$name` can be resolved.
    fn bind(&mut self, node: Node<'_>, src: &str) {
        let Some(name) = field(node, grammar().name) else {
            return;
        };
        if kind(name) != "variable_name" {
            return;
        }
        let value = field(node, grammar().value)
            .map_or_else(|| Word::literal(""), |v| words::word_of(v, src));
        let assigned = node_text(node, src);
        // `x+=y` appends: the result is not one of the recorded values.
        let value = (!assigned[node_text(name, src).len()..].starts_with("+=")).then_some(value);
        self.out
            .bindings
            .push((node_text(name, src).to_string(), value));
    }

    /// Assignments that change which program runs or what it loads cannot be judged.
    fn assignment(&mut self, node: Node<'_>, src: &str) {
        if let Some(name) = field(node, grammar().name) {
            let name = node_text(name, src);
            let value = field(node, grammar().value)
                .map_or_else(|| Word::literal(""), |v| words::word_of(v, src));
            let harmless = !value.dynamic && env::harmless_value(name, &value.text);
            if dangerous_env(name) && !harmless {
                self.opaque(
                    node_text(node, src),
                    format!("setting {name} changes which program runs or what it loads"),
                );
            }
        }
    }

    fn pipeline(&mut self, node: Node<'_>, src: &str, depth: u32) {
        let mut cursor = node.walk();
        let stages: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        let mut earlier: Vec<usize> = Vec::new();
        for stage in stages {
            let start = self.out.parts.len();
            self.walk(stage, src, depth);
            let mine: Vec<usize> = (start..self.out.parts.len())
                .filter(|i| matches!(self.out.parts[*i], Part::Command(_)))
                .collect();
            if !earlier.is_empty() && !mine.is_empty() {
                self.out.feeds.push(Feed {
                    producers: earlier.clone(),
                    consumers: mine.clone(),
                });
            }
            earlier.extend(mine);
        }
    }

    fn redirected(&mut self, node: Node<'_>, src: &str, depth: u32) {
        let mut consumer = None;
        let body = field(node, grammar().body);
        if let Some(body) = body {
            if kind(body) == "command" {
                consumer = self.command(body, src, depth);
            } else {
                self.walk(body, src, depth);
            }
        }
        let body_id = body.map(|b| b.id());
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        for child in children {
            if Some(child.id()) == body_id {
                continue;
            }
            match kind(child) {
                "file_redirect" | "heredoc_redirect" | "herestring_redirect" => {
                    self.redirect(child, src, depth, consumer);
                }
                _ => self.walk(child, src, depth),
            }
        }
    }

    /// A redirect attached to the command at part index `consumer` (if it is a command).
    fn redirect(&mut self, node: Node<'_>, src: &str, depth: u32, consumer: Option<usize>) {
        let consumer_name = consumer.and_then(|i| match &self.out.parts[i] {
            Part::Command(c) => Some(c.name().to_string()),
            _ => None,
        });
        match kind(node) {
            "file_redirect" => {
                let op = operator(node, src);
                let Some(dest) = field(node, grammar().destination) else {
                    return;
                };
                let start = self.out.parts.len();
                self.walk_substitutions(dest, src, depth);
                self.feed_into(start, consumer);
                let path = words::word_of(dest, src);
                let via = node_text(node, src).to_string();
                match op.as_str() {
                    ">" | ">>" | "&>" | "&>>" | ">|" | "<>" => self.write_target(path, via),
                    ">&" | "<&" | ">&-" | "<&-" => {
                        // `>&2`, `2>&1` and `>&-` duplicate or close descriptors; `>& file`
                        // writes a file.
                        let t = path.text.as_str();
                        let is_fd =
                            t == "-" || t.trim_end_matches('-').chars().all(|c| c.is_ascii_digit());
                        if !is_fd || path.dynamic {
                            if op.starts_with('>') {
                                self.write_target(path, via);
                            } else {
                                self.read_target(path, via);
                            }
                        }
                    }
                    "<" => self.read_target(path, via),
                    _ => self.write_target(path, via),
                }
            }
            "herestring_redirect" => {
                let start = self.out.parts.len();
                self.walk_substitutions(node, src, depth);
                self.feed_into(start, consumer);
                if let Some(name) = &consumer_name {
                    if is_shell(name) {
                        let mut cursor = node.walk();
                        let content: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
                        for c in content
                            .into_iter()
                            .filter(|c| kind(*c) != "file_descriptor")
                        {
                            let w = words::word_of(c, src);
                            if w.dynamic {
                                self.opaque(
                                    node_text(node, src),
                                    "shell code computed at run time",
                                );
                            } else {
                                self.analyze_source(&w.text, depth + 1);
                            }
                        }
                    } else if is_interpreter(name) {
                        self.opaque(
                            node_text(node, src),
                            format!("inline code passed to {name} cannot be judged"),
                        );
                    }
                }
            }
            "heredoc_redirect" => {
                let start = self.out.parts.len();
                let mut cursor = node.walk();
                let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
                for child in children {
                    match kind(child) {
                        "heredoc_body" => {
                            self.walk_substitutions(child, src, depth);
                            if let Some(name) = &consumer_name {
                                if is_shell(name) {
                                    let body = node_text(child, src).to_string();
                                    self.analyze_source(&body, depth + 1);
                                } else if is_interpreter(name) {
                                    self.opaque(
                                        node_text(node, src),
                                        format!("inline code passed to {name} cannot be judged"),
                                    );
                                }
                            }
                        }
                        "file_redirect" | "herestring_redirect" => {
                            self.redirect(child, src, depth, consumer);
                        }
                        "heredoc_start" | "heredoc_end" | "heredoc_content" => {}
                        _ => self.walk(child, src, depth),
                    }
                }
                self.feed_into(start, consumer);
            }
            _ => self.walk(node, src, depth),
        }
    }

    fn feed_into(&mut self, start: usize, consumer: Option<usize>) {
        let Some(consumer) = consumer else { return };
        let producers: Vec<usize> = (start..self.out.parts.len())
            .filter(|i| matches!(self.out.parts[*i], Part::Command(_)))
            .collect();
        if !producers.is_empty() {
            self.out.feeds.push(Feed {
                producers,
                consumers: vec![consumer],
            });
        }
    }

    fn write_target(&mut self, path: Word, via: String) {
        if !path.dynamic && is_harmless_device(&path.text) {
            return;
        }
        if path.dynamic {
            self.opaque(
                &via,
                "the file this redirection writes is only known at run time",
            );
        }
        self.out.parts.push(Part::Write { path, via });
    }

    fn read_target(&mut self, path: Word, via: String) {
        if !path.dynamic && is_harmless_device(&path.text) {
            return;
        }
        self.out.parts.push(Part::Read { path, via });
    }

    /// Walks only the command and process substitutions inside a word.
    fn walk_substitutions(&mut self, node: Node<'_>, src: &str, depth: u32) {
        if matches!(kind(node), "command_substitution" | "process_substitution") {
            self.walk_children(node, src, depth);
            return;
        }
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        for child in children {
            self.walk_substitutions(child, src, depth);
        }
    }

    /// Handles one `command` node; returns the part index of the (outer) simple command.
    fn command(&mut self, node: Node<'_>, src: &str, depth: u32) -> Option<usize> {
        let mut argv: Vec<Word> = Vec::new();
        let mut env: Vec<String> = Vec::new();
        let mut redirects: Vec<Node<'_>> = Vec::new();
        let subst_start = self.out.parts.len();
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        for child in children {
            match kind(child) {
                "variable_assignment" => {
                    if let Some(name) = field(child, grammar().name) {
                        env.push(node_text(name, src).to_string());
                        // The command's arguments are expanded with the outer value, which
                        // this line does not show.
                        self.out
                            .bindings
                            .push((node_text(name, src).to_string(), None));
                    }
                    self.assignment(child, src);
                    self.walk_substitutions(child, src, depth);
                }
                "file_redirect" | "herestring_redirect" | "heredoc_redirect" => {
                    redirects.push(child);
                }
                "comment" => {}
                "subshell" => self.walk(child, src, depth),
                _ => {
                    self.walk_substitutions(child, src, depth);
                    argv.push(words::word_of(child, src));
                }
            }
        }
        let subst_parts: Vec<usize> = (subst_start..self.out.parts.len())
            .filter(|i| matches!(self.out.parts[*i], Part::Command(_)))
            .collect();
        let text = node_text(node, src);
        let index = if argv.is_empty() {
            None
        } else {
            self.simple(argv, env, Vec::new(), false, text, depth)
        };
        if let Some(i) = index {
            if !subst_parts.is_empty() {
                self.out.feeds.push(Feed {
                    producers: subst_parts,
                    consumers: vec![i],
                });
            }
        }
        for r in redirects {
            self.redirect(r, src, depth, index);
        }
        index
    }
}

/// Depth of the deepest node, computed without recursion.
fn max_depth(root: Node<'_>) -> usize {
    let mut cursor = root.walk();
    let (mut depth, mut max) = (0usize, 0usize);
    loop {
        if cursor.goto_first_child() {
            depth += 1;
            max = max.max(depth);
            if max > MAX_NESTING {
                return max;
            }
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return max;
            }
            depth -= 1;
        }
    }
}

/// Node kind names and field ids looked up once: `Node::kind()` converts a C string on every
/// call and `child_by_field_name` searches the field table, which together cost as much as
/// parsing.
struct Grammar {
    kinds: Vec<&'static str>,
    name: Option<std::num::NonZeroU16>,
    body: Option<std::num::NonZeroU16>,
    destination: Option<std::num::NonZeroU16>,
    variable: Option<std::num::NonZeroU16>,
    value: Option<std::num::NonZeroU16>,
}

fn grammar() -> &'static Grammar {
    static GRAMMAR: std::sync::OnceLock<Grammar> = std::sync::OnceLock::new();
    GRAMMAR.get_or_init(|| {
        let lang: tree_sitter::Language = tree_sitter_bash::LANGUAGE.into();
        let kinds = (0..lang.node_kind_count())
            .map(|id| {
                u16::try_from(id)
                    .ok()
                    .and_then(|id| lang.node_kind_for_id(id))
                    .unwrap_or("")
            })
            .collect();
        Grammar {
            kinds,
            name: lang.field_id_for_name("name"),
            body: lang.field_id_for_name("body"),
            destination: lang.field_id_for_name("destination"),
            variable: lang.field_id_for_name("variable"),
            value: lang.field_id_for_name("value"),
        }
    })
}

/// `kind(node)` without the per-call C string conversion.
pub(crate) fn kind(node: Node<'_>) -> &'static str {
    let g = grammar();
    match g.kinds.get(usize::from(node.kind_id())) {
        Some(k) if !k.is_empty() => k,
        _ => node.kind(),
    }
}

fn field<'t>(node: Node<'t>, id: Option<std::num::NonZeroU16>) -> Option<Node<'t>> {
    node.child_by_field_id(id?.get())
}

pub(crate) fn node_text<'a>(node: Node<'_>, src: &'a str) -> &'a str {
    src.get(node.byte_range()).unwrap_or("")
}

fn operator(node: Node<'_>, src: &str) -> String {
    let mut cursor = node.walk();
    let op = node
        .children(&mut cursor)
        .filter(|c| !c.is_named())
        .map(|c| node_text(c, src))
        .collect::<String>();
    op
}

/// Device files that are not real writes or reads.
fn is_harmless_device(path: &str) -> bool {
    matches!(
        path,
        "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/stdin" | "/dev/tty" | "/dev/zero"
    ) || path.starts_with("/dev/fd/")
}

fn is_fork_bomb(node: Node<'_>, src: &str) -> bool {
    let Some(name) = field(node, grammar().name) else {
        return false;
    };
    let name = node_text(name, src);
    let Some(body) = field(node, grammar().body) else {
        return false;
    };
    calls_itself(body, src, name)
}

fn calls_itself(node: Node<'_>, src: &str, name: &str) -> bool {
    if kind(node) == "command" {
        if let Some(n) = field(node, grammar().name) {
            if node_text(n, src) == name {
                return true;
            }
        }
    }
    let mut cursor = node.walk();
    let found = node
        .named_children(&mut cursor)
        .any(|c| calls_itself(c, src, name));
    found
}

#[cfg(test)]
mod tests;
