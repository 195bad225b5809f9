//! The walk over the syntax tree that turns a command line into [`Part`]s.

use tree_sitter::Node;

use super::syntax::{field, grammar, max_depth, named_children, parse};
use super::words::{self, Word};
use super::{
    dangerous_env, env, eval, is_interpreter, is_shell, kind, node_text, Analysis, Feed, Part,
    MAX_DEPTH, MAX_LEN, MAX_NESTING,
};

pub(crate) struct Walker {
    pub(crate) out: Analysis,
}

impl Walker {
    pub(crate) fn opaque(&mut self, text: &str, reason: impl Into<String>) {
        self.out.parts.push(Part::opaque(text, reason));
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
        let stages = named_children(node);
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
        let children = named_children(node);
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
                        let content = named_children(node);
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
                let children = named_children(node);
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

    pub(super) fn write_target(&mut self, path: Word, via: String) {
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

    pub(super) fn read_target(&mut self, path: Word, via: String) {
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
        let children = named_children(node);
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
        let children = named_children(node);
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
