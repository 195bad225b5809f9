//! Judging one simple command: the rule that matches its line, the guards, and where it runs.

use agp_contracts::{Decision, Tool};

use super::index::merged;
use super::{best_rule, rule_judgment, Judgment, Scene, Strictest};
use crate::file::{Policy, Rule};
use crate::guards::{destructive, egress, supply, GuardHit, GuardId};
use crate::matcher::{domain_matches, Matcher, Spec};
use crate::shell::{self, SimpleCommand};

/// A build or test runner working outside the project runs code no project rule vouches for.
fn judge_runner_outside(cmd: &SimpleCommand, scene: &Scene, acc: &mut Strictest) {
    if !crate::programs::runs_project_code(cmd.name(), cmd.args()) {
        return;
    }
    let outside = scene.cwds.iter().find(|c| scene.outside_project(c));
    if let Some(dir) = outside {
        acc.builtin(
            "shell",
            Decision::Require,
            format!(
                "{} may run in {}, outside the project: the code it runs there is not the \
                 project's",
                cmd.name(),
                dir.display()
            ),
        );
    }
}

/// Programs living in the standard binary directories may be named by full path in allow rules'
/// place; anything else keeps its path (so `/tmp/evil/git` is not `git` for an allow rule).
fn std_bin(argv0: &str) -> bool {
    match argv0.rsplit_once('/') {
        None => true,
        Some((dir, _)) => matches!(
            dir,
            "/bin" | "/usr/bin" | "/usr/local/bin" | "/sbin" | "/usr/sbin" | "/usr/local/sbin"
        ),
    }
}

impl Policy {
    pub(super) fn command_rule(&self, cmd: &SimpleCommand) -> Option<(&Rule, &Matcher)> {
        let typed = cmd.line();
        // The program was typed without a directory: both forms are the same line, so the
        // second one is only built when it differs.
        let plain_owned = cmd
            .argv
            .first()
            .is_some_and(|w| w.text.contains('/'))
            .then(|| cmd.line_with_basename())
            .filter(|plain| *plain != typed);
        let same_line = plain_owned.is_none();
        let plain = plain_owned.as_deref().unwrap_or(&typed);
        let allow_line = if cmd.argv.first().is_some_and(|w| std_bin(&w.text)) {
            plain
        } else {
            &typed
        };
        // xargs-style commands: the line with an argument appended, built once, on demand.
        let tail_line = std::cell::OnceCell::new();
        let by_word = self
            .index
            .bash_by_word
            .get(cmd.name())
            .map_or(&[][..], |v| v.as_slice());
        best_rule(self, merged(&self.index.bash_any, by_word), |rule, m| {
            if !m.applies_to_tool(&Tool::Bash) {
                return false;
            }
            match &m.spec {
                Spec::All => true,
                Spec::Command(p) => {
                    if rule.effect == Decision::Allow {
                        // An allow pattern must cover arguments xargs appends at run time.
                        p.matches(allow_line)
                            && (!cmd.dynamic_tail
                                || p.matches(tail_line.get_or_init(|| format!("{allow_line} x"))))
                    } else {
                        p.matches(&typed) || (!same_line && p.matches(plain))
                    }
                }
                _ => false,
            }
        })
    }

    pub(super) fn judge_command(&self, cmd: &SimpleCommand, scene: &Scene, acc: &mut Strictest) {
        if scene.cwd_unknown {
            acc.builtin(
                "shell",
                Decision::Require,
                "runs in a directory only known at run time (an earlier cd to a variable)",
            );
        }
        let rule = self.command_rule(cmd);
        let explicitly_allowed = rule.is_some_and(|(r, _)| r.effect == Decision::Allow);
        if let Some((r, m)) = rule {
            let mut j = rule_judgment(r, m, "this command");
            if j.decision == Decision::Allow {
                if let Some(w) = cmd.args().iter().find(|w| w.substitution) {
                    j = Judgment {
                            decision: Decision::Require,
                            rule_id: Some("shell".into()),
                            reason: format!(
                                "argument `{}` is computed by a command substitution, so no allow rule can vouch for it",
                                w.text
                            ),
                            approval: None,
                        };
                }
            }
            acc.push(j);
        }
        for hit in destructive::check_command(cmd, scene) {
            acc.guard(self, hit);
        }
        if let Some(hit) = supply::check_command(cmd) {
            acc.guard(self, hit);
        }
        if let Some(eg) = egress::check_command(cmd) {
            let domains_allow = eg.hosts_complete
                && eg
                    .hosts
                    .iter()
                    .all(|h| self.domain_decision(h) == Some(Decision::Allow));
            if !explicitly_allowed && !domains_allow {
                acc.guard(self, eg.hit);
            }
            for h in &eg.hosts {
                if let Some(d) = self.domain_decision(h) {
                    if d > Decision::Allow {
                        if let Some((r, m)) = self.domain_rule(h) {
                            acc.push_rule(r, m, || format!("the host {h}"));
                        }
                    }
                }
            }
        }
        let name = cmd.name();
        if cmd.wrappers.iter().any(|w| w == "sudo" || w == "doas")
            || matches!(name, "sudo" | "doas" | "su" | "pkexec" | "runuser")
        {
            acc.guard(
                self,
                GuardHit::require(GuardId::Privilege, "runs with elevated privileges"),
            );
        }
        if let Some(what) = shell::prints_environment(cmd) {
            acc.guard(
                self,
                GuardHit::require(
                    GuardId::ProtectedPaths,
                    format!("{what}; reading credentials needs approval"),
                ),
            );
        }
        if matches!(name, "cd" | "pushd") {
            return;
        }
        judge_runner_outside(cmd, scene, acc);
        self.judge_mentions(cmd, scene, acc);
        self.judge_file_readers(cmd, scene, acc);
        if rule.is_none() {
            acc.push_with(self.default, || self.default_judgment("this command"));
        }
    }

    pub(super) fn domain_rule(&self, host: &str) -> Option<(&Rule, &Matcher)> {
        best_rule(
            self,
            self.index.domain_rules.iter().copied(),
            |_, m| matches!(&m.spec, Spec::Domain(d) if domain_matches(d, host)),
        )
    }

    pub(super) fn domain_decision(&self, host: &str) -> Option<Decision> {
        self.domain_rule(host).map(|(r, _)| r.effect)
    }
}
