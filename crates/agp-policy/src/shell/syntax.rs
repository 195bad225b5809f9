//! tree-sitter-bash underneath: one parser per thread, node kinds and fields looked up once.

use std::cell::RefCell;

use tree_sitter::{Node, Parser};

use super::MAX_NESTING;

thread_local! {
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

pub(super) fn parse(src: &str) -> Option<tree_sitter::Tree> {
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

/// Depth of the deepest node, computed without recursion.
pub(super) fn max_depth(root: Node<'_>) -> usize {
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
pub(super) struct Grammar {
    kinds: Vec<&'static str>,
    pub(super) name: Option<std::num::NonZeroU16>,
    pub(super) body: Option<std::num::NonZeroU16>,
    pub(super) destination: Option<std::num::NonZeroU16>,
    pub(super) variable: Option<std::num::NonZeroU16>,
    pub(super) value: Option<std::num::NonZeroU16>,
}

pub(super) fn grammar() -> &'static Grammar {
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

/// A node's named children, collected (the walk recurses while it goes through them).
pub(super) fn named_children(node: Node<'_>) -> Vec<Node<'_>> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor).collect()
}

pub(super) fn field<'t>(node: Node<'t>, id: Option<std::num::NonZeroU16>) -> Option<Node<'t>> {
    node.child_by_field_id(id?.get())
}

pub(crate) fn node_text<'a>(node: Node<'_>, src: &'a str) -> &'a str {
    src.get(node.byte_range()).unwrap_or("")
}
