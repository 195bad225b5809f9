//! The tools a script may call, in Claude Code's vocabulary: their inputs, what makes an input
//! valid, and the input as the agent would send it (paths made absolute).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The tools' names, as a script spells them.
pub(super) const TOOLS: [&str; 6] = ["Bash", "Read", "Write", "Edit", "Glob", "Grep"];

/// Claude Code's built-in tools, with their input fields as Claude Code names them (an unset
/// option is left out, as Claude Code leaves it out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tool", content = "input")]
pub enum Tool {
    Bash(BashInput),
    Read(ReadInput),
    Write(WriteInput),
    Edit(EditInput),
    Glob(GlobInput),
    Grep(GrepInput),
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BashInput {
    pub command: String,
    pub description: Option<String>,
    /// Milliseconds.
    pub timeout: Option<u64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadInput {
    pub file_path: String,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteInput {
    pub file_path: String,
    pub content: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditInput {
    pub file_path: String,
    pub old_string: String,
    pub new_string: String,
    pub replace_all: Option<bool>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobInput {
    pub pattern: String,
    pub path: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrepInput {
    pub pattern: String,
    pub path: Option<String>,
    pub glob: Option<String>,
    #[serde(rename = "type")]
    pub file_type: Option<String>,
    /// `content`, `files_with_matches` or `count`.
    pub output_mode: Option<String>,
    #[serde(rename = "-i")]
    pub case_insensitive: Option<bool>,
    #[serde(rename = "-n")]
    pub line_numbers: Option<bool>,
    #[serde(rename = "-A")]
    pub after: Option<u64>,
    #[serde(rename = "-B")]
    pub before: Option<u64>,
    #[serde(rename = "-C")]
    pub context: Option<u64>,
    pub head_limit: Option<u64>,
    pub multiline: Option<bool>,
}

fn non_empty(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("\"{field}\" must not be empty"))
    } else {
        Ok(())
    }
}

pub(super) fn validate(tool: &Tool) -> Result<(), String> {
    match tool {
        Tool::Bash(b) => non_empty("command", &b.command),
        Tool::Read(r) => non_empty("file_path", &r.file_path),
        Tool::Write(w) => non_empty("file_path", &w.file_path),
        Tool::Edit(e) => {
            non_empty("file_path", &e.file_path)?;
            if e.old_string == e.new_string {
                return Err("\"old_string\" and \"new_string\" must differ".into());
            }
            Ok(())
        }
        Tool::Glob(g) => non_empty("pattern", &g.pattern),
        Tool::Grep(g) => {
            non_empty("pattern", &g.pattern)?;
            match g.output_mode.as_deref() {
                None | Some("content" | "files_with_matches" | "count") => Ok(()),
                Some(other) => Err(format!(
                    "\"output_mode\" {other:?} is not content, files_with_matches or count"
                )),
            }
        }
    }
}

impl Tool {
    /// The tool in agp's shared vocabulary, for the gateway request.
    pub fn wire(&self) -> agp_contracts::Tool {
        match self {
            Tool::Bash(_) => agp_contracts::Tool::Bash,
            Tool::Read(_) => agp_contracts::Tool::Read,
            Tool::Write(_) => agp_contracts::Tool::Write,
            Tool::Edit(_) => agp_contracts::Tool::Edit,
            Tool::Glob(_) => agp_contracts::Tool::Glob,
            Tool::Grep(_) => agp_contracts::Tool::Grep,
        }
    }

    /// Claude Code's name for the tool.
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Bash(_) => "Bash",
            Tool::Read(_) => "Read",
            Tool::Write(_) => "Write",
            Tool::Edit(_) => "Edit",
            Tool::Glob(_) => "Glob",
            Tool::Grep(_) => "Grep",
        }
    }

    /// The input object as Claude Code would send it, with paths made absolute: relative ones
    /// against `repo`, `~` and `~/...` against `home`, then `.` and `..` folded lexically (the
    /// policy judges, and the sandbox runs, the path that is actually meant).
    pub fn resolved_input(&self, repo: &Path, home: &Path) -> Value {
        let mut tool = self.clone();
        let fix = |p: &mut String| *p = resolve_path(p, repo, home);
        match &mut tool {
            Tool::Bash(_) => {}
            Tool::Read(r) => fix(&mut r.file_path),
            Tool::Write(w) => fix(&mut w.file_path),
            Tool::Edit(e) => fix(&mut e.file_path),
            Tool::Glob(g) => g.path.iter_mut().for_each(fix),
            Tool::Grep(g) => g.path.iter_mut().for_each(fix),
        }
        match serde_json::to_value(&tool) {
            Ok(Value::Object(mut m)) => m.remove("input").unwrap_or(Value::Null),
            // Serializing plain strings, integers and booleans cannot fail.
            _ => Value::Null,
        }
    }

    /// A one-line summary for output: the command, or the path (or pattern).
    pub fn summary(&self) -> String {
        match self {
            Tool::Bash(b) => b.command.clone(),
            Tool::Read(r) => r.file_path.clone(),
            Tool::Write(w) => format!("{} ({} bytes)", w.file_path, w.content.len()),
            Tool::Edit(e) => e.file_path.clone(),
            Tool::Glob(g) => g.pattern.clone(),
            Tool::Grep(g) => format!("{} {}", g.pattern, g.path.as_deref().unwrap_or(".")),
        }
    }
}

/// Makes `p` absolute and folds `.`/`..` without touching the file system.
pub fn resolve_path(p: &str, repo: &Path, home: &Path) -> String {
    let joined = if p == "~" {
        home.to_path_buf()
    } else if let Some(rest) = p.strip_prefix("~/") {
        home.join(rest)
    } else if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        repo.join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_paths_like_a_real_agent_sends_them() {
        let repo = Path::new("/work/repo");
        let home = Path::new("/home/alice");
        assert_eq!(
            resolve_path("src/main.rs", repo, home),
            "/work/repo/src/main.rs"
        );
        assert_eq!(resolve_path("./a/../b", repo, home), "/work/repo/b");
        assert_eq!(
            resolve_path("../../../etc/passwd", repo, home),
            "/etc/passwd"
        );
        assert_eq!(
            resolve_path("~/.ssh/id_ed25519", repo, home),
            "/home/alice/.ssh/id_ed25519"
        );
        assert_eq!(resolve_path("/etc/hosts", repo, home), "/etc/hosts");
        let write = Tool::Write(WriteInput {
            file_path: "~/.ssh/authorized_keys".into(),
            content: "k".into(),
        });
        assert_eq!(
            write.resolved_input(repo, home),
            json!({"file_path": "/home/alice/.ssh/authorized_keys", "content": "k"})
        );
        let bash = Tool::Bash(BashInput {
            command: "cat ../x".into(),
            description: None,
            timeout: None,
        });
        assert_eq!(
            bash.resolved_input(repo, home),
            json!({"command": "cat ../x"})
        );
    }
}
