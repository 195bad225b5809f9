//! One tool call split into the parts that are judged: a shell command's parts, a file tool's
//! targets, a fetched host, any other tool.

use std::collections::HashMap;

use agp_contracts::{Decision, Tool, ToolCall};
use serde_json::Value;

use super::files::judge_foreign;
use super::scene::{enter_dir, track_cd};
use super::{best_rule, rule_judgment, secrets_reason, Judgment, Scene, Strictest};
use crate::file::Policy;
use crate::guards::{destructive, GuardHit, GuardId};
use crate::matcher::{domain_matches, file_class, url_host, FileClass, Spec};
use crate::shell::{self, Part};

impl Policy {
    pub(super) fn judge_bash(&self, command: &str, scene: &mut Scene) -> Vec<(String, Judgment)> {
        let analysis = shell::analyze(command);
        scene.vars.clone_from(&analysis.bindings);
        let mut whole: HashMap<usize, Vec<GuardHit>> = HashMap::new();
        for (i, hit) in destructive::check_analysis(&analysis) {
            whole.entry(i).or_default().push(hit);
        }
        let mut out = Vec::with_capacity(analysis.parts.len());
        for (i, part) in analysis.parts.iter().enumerate() {
            let mut acc = Strictest::default();
            for hit in whole.remove(&i).unwrap_or_default() {
                acc.guard(self, hit);
            }
            let label = part.label();
            // Quote removal and `$'\x..'` decoding can assemble a secret the raw input scan
            // could not see (`'AKIA''…'`), so the normalized parts are scanned as well.
            if self.guard_enabled(GuardId::Secrets) {
                let kinds: Vec<&str> = crate::redact::find_secrets(&label)
                    .iter()
                    .map(|m| m.kind)
                    .collect();
                if !kinds.is_empty() {
                    acc.guard(
                        self,
                        GuardHit::deny(GuardId::Secrets, secrets_reason(&kinds)),
                    );
                }
            }
            match part {
                Part::Command(cmd) => {
                    if let Some(dir) = &cmd.chdir {
                        enter_dir(dir, scene);
                    }
                    self.judge_command(cmd, scene, &mut acc);
                    track_cd(cmd, scene);
                }
                Part::Write { path, via } => {
                    self.judge_file_word(FileClass::Write, path, via, scene, &mut acc);
                }
                Part::Read { path, via } => {
                    self.judge_file_word(FileClass::Read, path, via, scene, &mut acc);
                }
                Part::Foreign { path, via } => {
                    // Tooling pointed inside the project adds nothing to judge: the part only
                    // counts when it points elsewhere (or a guard had something to say).
                    if !judge_foreign(path, via, scene, &mut acc) && acc.0.is_none() {
                        continue;
                    }
                }
                Part::Opaque { reason, .. } => {
                    acc.builtin("shell", Decision::Require, reason.clone());
                    if self.default == Decision::Deny {
                        acc.push(self.default_judgment("what cannot be judged statically"));
                    }
                }
            }
            let j = acc.0.unwrap_or_else(|| self.default_judgment("this part"));
            out.push((label, j));
        }
        if out.is_empty() {
            out.push((
                command.trim().to_string(),
                self.default_judgment("an empty command"),
            ));
        }
        out
    }

    pub(super) fn judge_tool(&self, call: &ToolCall, scene: &mut Scene) -> Vec<(String, Judgment)> {
        let input = &call.input;
        let s = |k: &str| input.get(k).and_then(Value::as_str);
        let tool = &call.tool;
        match tool {
            Tool::Bash => self.judge_bash(s("command").unwrap_or(""), scene),
            _ if file_class(tool).is_some() => {
                let class = file_class(tool).unwrap_or(FileClass::Read);
                let raw = match tool {
                    Tool::NotebookEdit | Tool::NotebookRead => s("notebook_path"),
                    Tool::Glob | Tool::Grep | Tool::LS => s("path"),
                    _ => s("file_path"),
                };
                let mut targets = vec![raw.unwrap_or(".").to_string()];
                if *tool == Tool::Glob {
                    if let Some(pattern) = s("pattern") {
                        let literal: String = pattern
                            .split(['*', '?', '[', '{'])
                            .next()
                            .unwrap_or("")
                            .to_string();
                        // The directory the pattern itself reaches into (`/etc/*`, `../x/*`).
                        let dir = match literal.rsplit_once('/') {
                            Some(("", _)) => "/",
                            Some((d, _)) => d,
                            None => "",
                        };
                        if !dir.is_empty() {
                            let base = raw.unwrap_or(".");
                            targets.push(if dir.starts_with('/') || dir.starts_with('~') {
                                dir.to_string()
                            } else {
                                format!("{}/{dir}", base.trim_end_matches('/'))
                            });
                        }
                    }
                }
                targets
                    .into_iter()
                    .map(|t| {
                        let mut acc = Strictest::default();
                        self.judge_path(class, Some(tool), &t, scene, &mut acc);
                        let j = acc.0.unwrap_or_else(|| self.default_judgment("this call"));
                        (format!("{tool}:{t}"), j)
                    })
                    .collect()
            }
            Tool::WebFetch => {
                let url = s("url").unwrap_or("");
                let mut acc = Strictest::default();
                let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
                match url_host(url).filter(|_| scheme_ok) {
                    Some(host) => {
                        match best_rule(self, self.tool_rules(&Tool::WebFetch), |_, m| {
                            m.applies_to_tool(&Tool::WebFetch)
                                && match &m.spec {
                                    Spec::All => true,
                                    Spec::Domain(d) => domain_matches(d, &host),
                                    _ => false,
                                }
                        }) {
                            Some((r, m)) => {
                                acc.push(rule_judgment(r, m, &format!("fetching from {host}")));
                            }
                            None => {
                                acc.push(self.default_judgment(&format!("fetching from {host}")));
                            }
                        }
                    }
                    None => acc.builtin(
                        "schema",
                        Decision::Require,
                        "cannot tell which http(s) host this URL fetches from",
                    ),
                }
                vec![(
                    format!("WebFetch:{url}"),
                    acc.0.unwrap_or_else(|| self.default_judgment("this call")),
                )]
            }
            _ => {
                let mut acc = Strictest::default();
                match best_rule(self, 0..self.rules.len(), |_, m| {
                    m.applies_to_tool(tool) && matches!(m.spec, Spec::All)
                }) {
                    Some((r, m)) => acc.push(rule_judgment(r, m, "this tool")),
                    None => acc.push(self.default_judgment(&format!("the tool {tool}"))),
                }
                vec![(
                    tool.to_string(),
                    acc.0.unwrap_or_else(|| self.default_judgment("this call")),
                )]
            }
        }
    }
}
