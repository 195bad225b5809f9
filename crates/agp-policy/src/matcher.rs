//! Rule matchers in Claude Code's permission-rule syntax: `Tool`, `Bash(npm run *)`,
//! `Bash(npm:*)`, `Read(./.env)`, `Edit(/src/**)`, `WebFetch(domain:example.com)`,
//! `mcp__server__*`, `*`.

use agp_contracts::Tool;
use globset::{GlobBuilder, GlobMatcher};

use crate::paths::PathPattern;

/// Which kind of file access a tool performs; path rules of one class apply to all its tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileClass {
    Read,
    Write,
}

/// The class of a file tool, or `None` for tools that are not file tools.
pub fn file_class(tool: &Tool) -> Option<FileClass> {
    match tool {
        Tool::Read | Tool::Glob | Tool::Grep | Tool::LS | Tool::NotebookRead => {
            Some(FileClass::Read)
        }
        Tool::Write | Tool::Edit | Tool::MultiEdit | Tool::NotebookEdit => Some(FileClass::Write),
        Tool::Bash
        | Tool::BashOutput
        | Tool::KillShell
        | Tool::WebFetch
        | Tool::WebSearch
        | Tool::Task
        | Tool::TodoWrite
        | Tool::SlashCommand
        | Tool::ExitPlanMode
        | Tool::Mcp { .. }
        | Tool::Other(_) => None,
    }
}

/// Which tools a matcher applies to.
#[derive(Debug, Clone)]
pub enum ToolSel {
    Any,
    /// A tool named in the rule; never an MCP tool (those are globs).
    Name(Tool),
    /// `mcp__server__*`, `mcp__server` (all tools of a server).
    Glob(GlobMatcher),
    /// `Read(...)`, `Edit(...)`, `Write(...)`: every tool of the class.
    Class(FileClass),
}

/// What a matcher says about the tool input.
#[derive(Debug, Clone)]
pub enum Spec {
    /// Any input.
    All,
    /// `Bash(...)`: a pattern over one simple command.
    Command(CommandPattern),
    /// A path pattern for a file tool.
    Path(PathPattern),
    /// `WebFetch(domain:…)`.
    Domain(String),
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub source: String,
    pub tool: ToolSel,
    pub spec: Spec,
    /// Tool name as written (for lints).
    pub tool_name: String,
}

impl Matcher {
    pub fn parse(source: &str) -> Result<Self, String> {
        let s = source.trim();
        if s.is_empty() {
            return Err("empty matcher".into());
        }
        let (tool, arg) = match s.find('(') {
            Some(open) => {
                let Some(inner) = s[open + 1..].strip_suffix(')') else {
                    return Err(format!("matcher `{s}` is missing its closing `)`"));
                };
                (&s[..open], Some(inner))
            }
            None => (s, None),
        };
        if tool.is_empty() {
            return Err(format!("matcher `{s}` has no tool name"));
        }
        if !tool
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*')
        {
            return Err(format!("`{tool}` is not a tool name"));
        }
        let tool_sel = if tool == "*" {
            ToolSel::Any
        } else if tool.starts_with("mcp__") {
            let pattern = if tool.contains('*') || tool.matches("__").count() >= 2 {
                tool.to_string()
            } else {
                format!("{tool}__*")
            };
            let glob = GlobBuilder::new(&pattern)
                .build()
                .map_err(|e| format!("bad tool pattern `{tool}`: {}", e.kind()))?
                .compile_matcher();
            ToolSel::Glob(glob)
        } else if tool.contains('*') {
            return Err(format!(
                "`{tool}`: wildcards in tool names are only supported for mcp__ tools and `*`"
            ));
        } else {
            match (Tool::parse_name(tool), arg.is_some()) {
                (Tool::Read, true) => ToolSel::Class(FileClass::Read),
                (Tool::Edit | Tool::Write | Tool::MultiEdit | Tool::NotebookEdit, _) => {
                    ToolSel::Class(FileClass::Write)
                }
                (named, _) => ToolSel::Name(named),
            }
        };
        let parsed = Tool::parse_name(tool);
        let spec = match arg {
            None => Spec::All,
            Some(a) if a.trim().is_empty() || a.trim() == "*" => Spec::All,
            Some(a) => match &parsed {
                Tool::Bash => Spec::Command(CommandPattern::parse(a)?),
                Tool::WebFetch => match a.strip_prefix("domain:") {
                    Some(d) if !d.is_empty() && !d.contains('/') => {
                        Spec::Domain(d.trim_end_matches('.').to_ascii_lowercase())
                    }
                    _ => {
                        return Err(format!(
                            "`{s}`: WebFetch takes `domain:example.com` or `domain:*.example.com`"
                        ))
                    }
                },
                t if file_class(t).is_some() => Spec::Path(PathPattern::parse(a)?),
                _ => return Err(format!("`{s}`: {tool} does not take a specifier")),
            },
        };
        Ok(Self {
            source: s.to_string(),
            tool: tool_sel,
            spec,
            tool_name: tool.to_string(),
        })
    }

    /// Does the matcher apply to calls of `tool` (ignoring the input)?
    pub fn applies_to_tool(&self, tool: &Tool) -> bool {
        match &self.tool {
            ToolSel::Any => true,
            ToolSel::Name(n) => {
                n == tool
                    // A bare `Read` covers every read tool, like Claude Code.
                    || (*n == Tool::Read && file_class(tool) == Some(FileClass::Read))
            }
            // Tool globs only exist for `mcp__` names, which no known tool has.
            ToolSel::Glob(g) => match tool {
                Tool::Mcp { .. } => g.is_match(&*tool.name()),
                Tool::Other(raw) => g.is_match(raw),
                _ => false,
            },
            ToolSel::Class(c) => file_class(tool) == Some(*c),
        }
    }

    /// Is this a matcher of the given file class (for paths a shell command reads or writes)?
    pub fn applies_to_class(&self, class: FileClass) -> bool {
        match &self.tool {
            ToolSel::Any => true,
            ToolSel::Class(c) => *c == class,
            ToolSel::Name(n) => file_class(n) == Some(class) && matches!(self.spec, Spec::All),
            ToolSel::Glob(_) => false,
        }
    }
}

/// A `Bash(...)` pattern: `*` matches anything; a trailing ` *` (or legacy `:*`) also matches
/// the bare prefix, so `npm run *` covers `npm run` and `npm run build` but not `npm runx`.
#[derive(Debug, Clone)]
pub struct CommandPattern {
    /// Literal pieces between `*`s, with a precomputed substring searcher each.
    pieces: Vec<(String, memchr::memmem::Finder<'static>)>,
    leading_star: bool,
    trailing_star: bool,
    /// The text before a trailing ` *`, matched exactly as an alternative.
    bare_prefix: Option<String>,
    /// First word when it is literal: used to index rules by program name.
    pub first_word: Option<String>,
}

impl CommandPattern {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut p = spec.trim().to_string();
        if let Some(prefix) = p.strip_suffix(":*") {
            p = format!("{} *", prefix.trim_end());
        }
        if p.is_empty() {
            return Err("empty command pattern".into());
        }
        let bare_prefix = p.strip_suffix(" *").map(|s| s.trim_end().to_string());
        let leading_star = p.starts_with('*');
        let trailing_star = p.ends_with('*');
        let pieces = p
            .split('*')
            .filter(|s| !s.is_empty())
            .map(|s| {
                (
                    s.to_string(),
                    memchr::memmem::Finder::new(s.as_bytes()).into_owned(),
                )
            })
            .collect();
        let first_word = (!leading_star)
            .then(|| {
                let w: String = p.chars().take_while(|c| *c != ' ' && *c != '*').collect();
                let whole_word = p[w.len()..].is_empty() || p[w.len()..].starts_with(' ');
                (whole_word && !w.is_empty()).then_some(w)
            })
            .flatten();
        Ok(Self {
            pieces,
            leading_star,
            trailing_star,
            bare_prefix,
            first_word,
        })
    }

    pub fn matches(&self, line: &str) -> bool {
        if self.bare_prefix.as_deref() == Some(line) {
            return true;
        }
        wildcard(line, &self.pieces, self.leading_star, self.trailing_star)
    }
}

fn wildcard(
    text: &str,
    pieces: &[(String, memchr::memmem::Finder<'static>)],
    leading: bool,
    trailing: bool,
) -> bool {
    if pieces.is_empty() {
        return leading || trailing || text.is_empty();
    }
    let mut rest = text;
    for (i, (piece, finder)) in pieces.iter().enumerate() {
        let first = i == 0;
        let last = i == pieces.len() - 1;
        if first && !leading {
            let Some(r) = rest.strip_prefix(piece.as_str()) else {
                return false;
            };
            rest = r;
            if last {
                return trailing || rest.is_empty();
            }
            continue;
        }
        if last && !trailing {
            return rest.len() >= piece.len() && rest.ends_with(piece.as_str());
        }
        match finder.find(rest.as_bytes()) {
            Some(pos) => rest = &rest[pos + piece.len()..],
            None => return false,
        }
    }
    trailing || rest.is_empty()
}

/// Does `host` match a `domain:` pattern (`example.com` exactly, `*.example.com` subdomains)?
pub fn domain_matches(pattern: &str, host: &str) -> bool {
    // Compared in place (ASCII case-insensitively) rather than through lowercased copies:
    // every domain rule is checked against each host a command or fetch names.
    // `lower` is compared as it is (patterns are lowercased when parsed), `host` as if
    // ASCII-lowercased, like the copies this avoids.
    fn lowered_eq(host: &[u8], lower: &[u8]) -> bool {
        host.len() == lower.len()
            && host
                .iter()
                .zip(lower)
                .all(|(h, l)| h.to_ascii_lowercase() == *l)
    }
    let host = host.trim_end_matches('.').as_bytes();
    match pattern.strip_prefix("*.") {
        Some(parent) => {
            let parent = parent.as_bytes();
            host.len() > parent.len() + 1 && {
                let (head, tail) = host.split_at(host.len() - parent.len());
                head.last() == Some(&b'.') && lowered_eq(tail, parent)
            }
        }
        None => lowered_eq(host, pattern.as_bytes()),
    }
}

/// The host of an `http(s)://` (or scheme-less `host/path`) URL, lowercased; `None` when it
/// cannot be told.
pub fn url_host(url: &str) -> Option<String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            if scheme.is_empty()
                || !scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            {
                return None;
            }
            rest
        }
        None => url,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.contains(['\\', ' ', '%']) {
        return None;
    }
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(p: &str, line: &str) -> bool {
        CommandPattern::parse(p).unwrap().matches(line)
    }

    #[test]
    fn command_patterns() {
        assert!(cm("npm run *", "npm run build"));
        assert!(cm("npm run *", "npm run"));
        assert!(!cm("npm run *", "npm runx"));
        assert!(cm("npm:*", "npm install x"));
        assert!(cm("npm:*", "npm"));
        assert!(!cm("npm:*", "npmx"));
        assert!(cm("ls*", "lsof"));
        assert!(!cm("ls *", "lsof"));
        assert!(cm("git * --force", "git push origin --force"));
        assert!(!cm("git * --force", "git push --force-with-lease"));
        assert!(cm("git status", "git status"));
        assert!(!cm("git status", "git status --short"));
        assert!(cm("* --version", "cargo --version"));
        assert!(cm("*", "anything at all"));
        assert_eq!(
            CommandPattern::parse("npm run *")
                .unwrap()
                .first_word
                .as_deref(),
            Some("npm")
        );
        assert_eq!(CommandPattern::parse("ls*").unwrap().first_word, None);
    }

    #[test]
    fn matcher_syntax() {
        let m = Matcher::parse("Bash(npm run test:*)").unwrap();
        assert!(m.applies_to_tool(&Tool::parse_name("Bash")));
        assert!(!m.applies_to_tool(&Tool::parse_name("Read")));
        let m = Matcher::parse("Edit(/src/**)").unwrap();
        assert!(
            m.applies_to_tool(&Tool::parse_name("Write"))
                && m.applies_to_tool(&Tool::parse_name("MultiEdit"))
        );
        let m = Matcher::parse("Read").unwrap();
        assert!(
            m.applies_to_tool(&Tool::parse_name("Grep"))
                && m.applies_to_tool(&Tool::parse_name("Read"))
        );
        let m = Matcher::parse("mcp__github").unwrap();
        assert!(m.applies_to_tool(&Tool::parse_name("mcp__github__create_issue")));
        assert!(!m.applies_to_tool(&Tool::parse_name("mcp__githubx__a")));
        let m = Matcher::parse("mcp__github__*").unwrap();
        assert!(m.applies_to_tool(&Tool::parse_name("mcp__github__create_issue")));
        assert!(Matcher::parse("*")
            .unwrap()
            .applies_to_tool(&Tool::parse_name("Anything")));
        assert!(Matcher::parse("Bash(ls").is_err());
        assert!(Matcher::parse("WebFetch(https://x)").is_err());
        assert!(Matcher::parse("Ba*sh").is_err());
        assert!(Matcher::parse("WebSearch(x)").is_err());
    }

    #[test]
    fn domains_and_urls() {
        assert!(domain_matches("example.com", "Example.COM."));
        assert!(!domain_matches("example.com", "api.example.com"));
        assert!(domain_matches("*.example.com", "api.example.com"));
        assert!(!domain_matches("*.example.com", "example.com"));
        assert!(!domain_matches("*.example.com", "evilexample.com"));
        assert_eq!(
            url_host("https://user:pw@API.github.com:443/x?y").as_deref(),
            Some("api.github.com")
        );
        assert_eq!(url_host("github.com/foo").as_deref(), Some("github.com"));
        assert_eq!(url_host("http://[::1]:80/").as_deref(), Some("::1"));
        assert_eq!(url_host("https:///x"), None);
    }
}
