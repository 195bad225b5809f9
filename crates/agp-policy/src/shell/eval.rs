//! Bash constructs that evaluate strings as code.
//!
//! Bash evaluates more than `eval`: every arithmetic context (`$((x))`, `((x))`, `let`, the
//! operands of `[[ a -eq b ]]`, `declare -i`, array subscripts, substring offsets) evaluates the
//! *value* of a variable as an arithmetic expression, and an array reference in that value
//! (`x='a[$(id)]'`) runs its subscript's command substitution. Prompt expansion (`${x@P}`),
//! indirect expansion (`${!x}`), namerefs, `printf -v`/`read`/`unset` of a subscripted name,
//! `trap`, `complete -C`, `bind -x`, `source`, `enable -f`, `hash -p`, aliases and
//! `command_not_found_handle` all run text or change what a name runs. An allow rule cannot
//! vouch for text whose meaning depends on run-time values, so each of these is inline code:
//! an [`Part::Opaque`] that is never allowed.
//!
//! The rule is general, not a list of exploits: an arithmetic context whose operands are not
//! all plain integer literals is code; a name operand with a subscript is code.

use tree_sitter::Node;

use super::words::Word;
use super::{kind, node_text, Part, SimpleCommand};

const ARITH: &str = "arithmetic evaluates variable values as expressions; a value such as \
                     `a[$(cmd)]` runs a command, so it is judged as inline code";
const SUBSCRIPT: &str = "a subscripted name is evaluated as arithmetic (a subscript such as \
                         `a[$(cmd)]` runs a command), so it is judged as inline code";

/// Findings of the syntax scan: inline-code parts and declaration commands that print the
/// environment (judged as commands so the engine can treat them as a secrets read).
pub(super) fn scan_tree(root: Node<'_>, src: &str, out: &mut Vec<Part>) {
    if !may_evaluate(src) {
        return;
    }
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        if let Some(reason) = node_evaluates_code(node, src, out) {
            out.push(Part::opaque(node_text(node, src), reason));
        }
        if cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// Every construct `scan_tree` looks for needs one of these in the source: arithmetic and
/// arrays a `(` or `[`, parameter expansions a `{`, the rest a keyword. Most command lines
/// have none, and skip the walk.
fn may_evaluate(src: &str) -> bool {
    memchr::memchr3(b'(', b'[', b'{', src.as_bytes()).is_some()
        || [
            "declare",
            "typeset",
            "local",
            "export",
            "readonly",
            "unset",
            "command_not_found",
        ]
        .iter()
        .any(|k| src.contains(k))
}

/// Is this arithmetic made only of integer literals and operators?
fn plain_arithmetic(node: Node<'_>, src: &str) -> bool {
    let mut cursor = node.walk();
    let ok = node.named_children(&mut cursor).all(|c| match kind(c) {
        "number" => true,
        "word" => is_integer(node_text(c, src)),
        "binary_expression"
        | "unary_expression"
        | "parenthesized_expression"
        | "ternary_expression" => plain_arithmetic(c, src),
        _ => false,
    });
    ok
}

/// `12`, `-3`, `0x1f`, `8#17`: literals bash reads as numbers without looking up a name.
fn is_integer(s: &str) -> bool {
    let s = s.trim();
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '#')
}

fn node_evaluates_code(node: Node<'_>, src: &str, out: &mut Vec<Part>) -> Option<&'static str> {
    let text = node_text(node, src);
    match kind(node) {
        "arithmetic_expansion" | "c_style_for_statement" => {
            (!plain_arithmetic(node, src)).then_some(ARITH)
        }
        "compound_statement" if text.starts_with("((") => {
            (!plain_arithmetic(node, src)).then_some(ARITH)
        }
        "binary_expression" if in_test_command(node) => {
            let op = node
                .child_by_field_name("operator")
                .map_or("", |o| node_text(o, src));
            let arithmetic = matches!(op, "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge");
            let operands_plain = ["left", "right"].iter().all(|f| {
                node.child_by_field_name(f)
                    .is_none_or(|o| kind(o) == "number" || is_integer(node_text(o, src)))
            });
            (arithmetic && !operands_plain).then_some(ARITH)
        }
        "unary_expression" if in_test_command(node) => {
            let op = node
                .child_by_field_name("operator")
                .map_or("", |o| node_text(o, src));
            let operand = node.named_child(node.named_child_count().saturating_sub(1));
            let plain_name = operand.is_some_and(|o| {
                let t = node_text(o, src);
                kind(o) == "word" && is_name(t)
            });
            (matches!(op, "-v" | "-R") && !plain_name).then_some(SUBSCRIPT)
        }
        "expansion" => expansion_is_code(node, src),
        "variable_assignment" => {
            let name = node.child_by_field_name("name")?;
            if kind(name) == "subscript" && !plain_subscript(name, src) {
                return Some(SUBSCRIPT);
            }
            // `a=([i]=v)`: the keys of an indexed array literal are arithmetic.
            let value = node.child_by_field_name("value")?;
            (kind(value) == "array" && array_keys_evaluate(node_text(value, src)))
                .then_some(SUBSCRIPT)
        }
        "declaration_command" => declaration(node, src, out),
        "unset_command" => {
            let mut cursor = node.walk();
            let subscripted = node.named_children(&mut cursor).any(|c| {
                if kind(c) == "variable_name" {
                    return false;
                }
                let w = super::words::word_of(c, src);
                w.dynamic || w.text.contains('[')
            });
            subscripted.then_some(SUBSCRIPT)
        }
        "function_definition" => {
            let name = node.child_by_field_name("name").map(|n| node_text(n, src));
            matches!(
                name,
                Some("command_not_found_handle" | "command_not_found_handler")
            )
            .then_some("defining command_not_found_handle makes every unknown name run code")
        }
        _ => None,
    }
}

/// Any bracketed text in an array literal that is not an integer key counts (a value that
/// merely contains brackets is flagged too: stricter, never looser).
fn array_keys_evaluate(literal: &str) -> bool {
    literal
        .split('[')
        .skip(1)
        .any(|rest| match rest.split_once(']') {
            Some((key, _)) => !is_integer(key),
            None => true,
        })
}

fn in_test_command(node: Node<'_>) -> bool {
    let mut p = node.parent();
    while let Some(n) = p {
        match kind(n) {
            "test_command" => return true,
            "binary_expression"
            | "unary_expression"
            | "parenthesized_expression"
            | "negated_expression" => p = n.parent(),
            _ => return false,
        }
    }
    false
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `a[1]`, `a[@]`, `a[*]`: subscripts that evaluate nothing.
fn plain_subscript(sub: Node<'_>, src: &str) -> bool {
    match sub.child_by_field_name("index") {
        Some(i) => {
            let t = node_text(i, src);
            kind(i) == "number" || is_integer(t) || t == "@" || t == "*"
        }
        None => false,
    }
}

fn expansion_is_code(node: Node<'_>, src: &str) -> Option<&'static str> {
    let text = node_text(node, src);
    let inner = text.strip_prefix("${")?.strip_suffix('}')?;
    if inner.ends_with("@P") {
        return Some(
            "prompt expansion (`@P`) runs the command substitutions in the value, so it is \
             judged as inline code",
        );
    }
    if let Some(rest) = inner.strip_prefix('!') {
        // `${!prefix*}`, `${!prefix@}` and `${!a[@]}` list names or keys; anything else reads
        // the variable named by a value, and a name such as `a[$(cmd)]` runs a command.
        let lists = rest.ends_with('*') || rest.ends_with('@') || rest.ends_with("[@]");
        let lists = lists || rest.ends_with("[*]");
        if !lists {
            return Some(
                "indirect expansion (`${!x}`) evaluates a name taken from a value (`a[$(cmd)]` \
                 runs a command), so it is judged as inline code",
            );
        }
    }
    let mut cursor = node.walk();
    for c in node.named_children(&mut cursor) {
        if kind(c) == "subscript" && !plain_subscript(c, src) {
            return Some(SUBSCRIPT);
        }
    }
    // Substring `${x:off:len}`: the offsets are arithmetic. `${x:-…}`, `${x:=…}`, `${x:?…}`
    // and `${x:+…}` are not.
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '#'))
        .unwrap_or(inner.len());
    let after = &inner[name_len..];
    if let Some(ops) = after.strip_prefix(':') {
        if !ops.starts_with(['-', '=', '?', '+']) && !ops.split(':').all(is_integer) {
            return Some(ARITH);
        }
    }
    None
}

/// `declare`/`typeset`/`local`/`export`/`readonly`.
fn declaration(node: Node<'_>, src: &str, out: &mut Vec<Part>) -> Option<&'static str> {
    let mut cursor = node.walk();
    let keyword = node
        .children(&mut cursor)
        .find(|c| !c.is_named())
        .map_or("declare", |c| node_text(c, src));
    let mut flags = String::new();
    let mut operands = 0usize;
    let mut cursor = node.walk();
    let mut argv = vec![Word::literal(keyword)];
    for c in node.named_children(&mut cursor) {
        let w = if kind(c) == "variable_name" {
            Word::literal(node_text(c, src))
        } else {
            super::words::word_of(c, src)
        };
        argv.push(w.clone());
        if kind(c) != "variable_assignment" && w.text.starts_with(['-', '+']) && !w.dynamic {
            flags.push_str(&w.text[1..]);
            continue;
        }
        operands += 1;
        let name = match kind(c) {
            "variable_assignment" => c
                .child_by_field_name("name")
                .map(|n| node_text(n, src).to_string())
                .unwrap_or_default(),
            _ => w.text.split('=').next().unwrap_or("").to_string(),
        };
        if w.dynamic && kind(c) != "variable_assignment" {
            return Some(SUBSCRIPT);
        }
        if name.contains('[') {
            return Some(SUBSCRIPT);
        }
    }
    if flags.contains('i') {
        // Every later assignment to an integer variable is arithmetic evaluation.
        return Some(ARITH);
    }
    // `export -n` removes the export attribute; elsewhere `-n` makes a nameref.
    if flags.contains('n') && keyword != "export" {
        return Some(
            "a nameref (`declare -n`) makes a name evaluate another, possibly subscripted, name",
        );
    }
    if operands == 0 || flags.contains('p') {
        // Printing variables: judged as a command (a secrets read) by the engine.
        out.push(Part::Command(SimpleCommand {
            argv,
            wrappers: Vec::new(),
            env: Vec::new(),
            dynamic_tail: false,
            chdir: None,
        }));
    }
    None
}

/// Builtins that run text, assign through a subscript, or change what a name runs.
pub(super) fn command_evaluates_code(cmd: &SimpleCommand) -> Option<String> {
    let args = cmd.args();
    let operand_subscripted = |skip_values: &[&str]| {
        let mut i = 0;
        while i < args.len() {
            let w = &args[i];
            if w.text.starts_with('-') && !w.dynamic {
                if skip_values.contains(&w.text.as_str()) {
                    i += 1;
                }
            } else if w.dynamic || w.text.contains('[') {
                return true;
            }
            i += 1;
        }
        false
    };
    let name = cmd.name();
    let why = match name {
        "let" => (!args.iter().all(|w| !w.dynamic && arith_literal(&w.text))).then_some(ARITH),
        "read" => operand_subscripted(&["-d", "-i", "-n", "-N", "-p", "-t", "-u"])
            .then_some(SUBSCRIPT)
            .or_else(|| {
                option_value(args, "-a")
                    .is_some_and(|w| w.dynamic || w.text.contains('['))
                    .then_some(SUBSCRIPT)
            }),
        "mapfile" | "readarray" => operand_subscripted(&["-d", "-n", "-O", "-s", "-u", "-C", "-c"])
            .then_some(SUBSCRIPT)
            .or_else(|| {
                args.iter()
                    .any(|w| w.text == "-C" || w.text.starts_with("-C"))
                    .then_some("mapfile -C runs a callback as code")
            }),
        "unset" | "getopts" | "wait" => operand_subscripted(&["-p"]).then_some(SUBSCRIPT),
        "printf" => option_value(args, "-v")
            .is_some_and(|w| w.dynamic || w.text.contains('['))
            .then_some(SUBSCRIPT),
        "test" | "[" => args
            .windows(2)
            .any(|p| {
                matches!(p[0].text.as_str(), "-v" | "-R")
                    && (p[1].dynamic || p[1].text.contains('['))
            })
            .then_some(SUBSCRIPT),
        "trap" => args
            .iter()
            .any(|w| !w.text.starts_with('-') || w.dynamic)
            .then_some("a trap action runs later as code, in a state that cannot be judged now"),
        "complete" | "compgen" => args
            .iter()
            .any(|w| w.text.starts_with("-C") || w.text.starts_with("-F"))
            .then_some("a completion command or function runs as code"),
        "bind" => args
            .iter()
            .any(|w| w.text.starts_with('-') && w.text.contains('x'))
            .then_some("bind -x runs a command as code"),
        "source" | "." => Some("source runs a file as shell code"),
        "enable" => (!args.is_empty())
            .then_some("enable loads or switches off builtins, changing what a name runs"),
        "hash" => args
            .iter()
            .any(|w| w.text.starts_with('-') && w.text.contains('p'))
            .then_some("hash -p changes which program a name runs"),
        "alias" => args
            .iter()
            .any(|w| w.text.contains('='))
            .then_some("an alias changes what a name runs"),
        "shopt" => args
            .iter()
            .any(|w| {
                matches!(
                    w.text.as_str(),
                    "expand_aliases" | "extdebug" | "promptvars" | "xpg_echo"
                )
            })
            .then_some("this shell option changes how later text is evaluated"),
        _ => None,
    };
    why.map(|w| format!("{name}: {w}"))
}

fn option_value<'a>(args: &'a [Word], opt: &str) -> Option<&'a Word> {
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if t == opt {
            return args.get(i + 1);
        }
        if t.starts_with('-') && t.len() > 2 && t.ends_with(&opt[1..]) && !t.starts_with("--") {
            // `-rv name`: a clustered flag whose value is the next word.
            return args.get(i + 1);
        }
        i += 1;
    }
    None
}

/// `let` operands made of digits and operators only.
fn arith_literal(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_digit() || " +-*/%()<>=!&|^~?:,".contains(c))
}

/// Variables a builtin sets from data only known at run time (`read f`, `mapfile a`,
/// `printf -v x`, `getopts o x`).
pub(super) fn names_set_at_run_time(cmd: &SimpleCommand) -> Vec<String> {
    let args = cmd.args();
    let operands = |skip_values: &[&str]| -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let t = args[i].text.as_str();
            if t.starts_with('-') {
                if skip_values.contains(&t) {
                    i += 1;
                }
            } else {
                out.push(t.split('[').next().unwrap_or("").to_string());
            }
            i += 1;
        }
        out
    };
    match cmd.name() {
        "read" => {
            let mut v = operands(&["-d", "-i", "-n", "-N", "-p", "-t", "-u", "-a"]);
            v.extend(option_value(args, "-a").map(|w| w.text.clone()));
            v.push("REPLY".into());
            v
        }
        "mapfile" | "readarray" => {
            let mut v = operands(&["-d", "-n", "-O", "-s", "-u", "-C", "-c"]);
            v.push("MAPFILE".into());
            v
        }
        "printf" => option_value(args, "-v")
            .map(|w| vec![w.text.clone()])
            .unwrap_or_default(),
        "getopts" => operands(&[]).into_iter().skip(1).take(1).collect(),
        "select" | "wait" => operands(&["-p"]),
        _ => Vec::new(),
    }
}
