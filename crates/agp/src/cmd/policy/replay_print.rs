//! The replay report: built from the judged calls, printed as text or as one JSON document.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agp_policy::Policy;
use anyhow::Result;
use serde::Serialize;

use super::history::{History, Recorded, Trust};
use super::replay::{Judged, Status};

/// A changed (or unreplayable) call as shown in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub session: String,
    pub call_id: String,
    pub seq: u64,
    pub ts: String,
    pub tool: String,
    /// The journaled (redacted) input, cut for display.
    pub input: String,
    pub outcome: String,
    /// It ran (allowed, approved, or a result was journaled).
    pub ran: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The recorded verdict's rule (`default` when the policy default decided) and reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_reason: Option<String>,
    /// What a difference was checked against: `recorded policy re-run today` (it was at hand)
    /// or `recorded verdict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis: Option<&'static str>,
    pub tightened: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not_judged: Option<String>,
    /// The recorded policy's verdict today, when it differs from the recorded one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
}

/// Changes sharing a rule or a command.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    pub key: String,
    pub calls: usize,
    pub tightened: usize,
    /// `allow -> require` → how many.
    pub transitions: BTreeMap<String, usize>,
    pub examples: Vec<Example>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub policy: PathBuf,
    pub policy_sha256: String,
    pub journal: Trust,
    pub calls: usize,
    pub judged: usize,
    pub unchanged: usize,
    pub changed: usize,
    /// Calls that ran (allowed, or approved) and would now be denied or need approval.
    pub tightened: usize,
    /// Calls that would now be allowed although a human denied them or nobody approved them.
    pub loosened_unapproved: usize,
    pub not_reconstructible: usize,
    /// Calls whose recorded policy was at hand: a difference was re-checked with it today (the
    /// rest are compared with the recorded verdict).
    pub compared_with_same_policy_today: usize,
    /// Calls whose recorded policy judges them differently today (this machine changed).
    pub machine_differences: usize,
    pub by_rule: Vec<Group>,
    pub by_command: Vec<Group>,
    pub changes: Vec<Example>,
    pub not_reconstructible_calls: Vec<Example>,
    pub machine_difference_calls: Vec<Example>,
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    s.chars().take(n - 1).collect::<String>() + "…"
}

fn input_text(c: &Recorded) -> String {
    let text = match c.input.get("command").and_then(|v| v.as_str()) {
        Some(cmd) if c.tool == "Bash" => cmd.to_string(),
        _ => c
            .input
            .get("file_path")
            .or_else(|| c.input.get("url"))
            .or_else(|| c.input.get("path"))
            .and_then(|v| v.as_str())
            .map_or_else(|| c.input.to_string(), str::to_string),
    };
    cut(&text, 160)
}

fn example(c: &Recorded, j: &Judged) -> Example {
    let tightened = matches!(j.status, Status::Changed { tightened: true });
    Example {
        session: c.session.clone(),
        call_id: c.call_id.clone(),
        seq: c.seq,
        ts: c.ts.clone(),
        tool: c.tool.clone(),
        input: input_text(c),
        outcome: c.outcome.label(),
        ran: c.ran(),
        before: j.before.map(|d| d.to_string()),
        recorded_rule: c
            .decided
            .as_ref()
            .map(|d| d.rule_id.clone().unwrap_or_else(|| "default".into())),
        recorded_reason: c.decided.as_ref().map(|d| d.reason.clone()),
        after: j.after.as_ref().map(|v| v.decision.to_string()),
        after_rule: j
            .after
            .as_ref()
            .map(|v| v.rule_id.clone().unwrap_or_else(|| "default".into())),
        after_reason: j.after.as_ref().map(|v| v.reason.clone()),
        basis: j.after.as_ref().map(|_| {
            if j.same_policy_today {
                "recorded policy re-run today"
            } else {
                "recorded verdict"
            }
        }),
        tightened,
        why_not_judged: match &j.status {
            Status::NotReconstructible(why) => Some(why.clone()),
            _ => None,
        },
        drift: j.drift.map(|d| d.to_string()),
    }
}

fn add(groups: &mut BTreeMap<String, Group>, key: &str, e: &Example, transition: &str, n: usize) {
    let g = groups.entry(key.to_string()).or_insert_with(|| Group {
        key: key.to_string(),
        ..Group::default()
    });
    g.calls += 1;
    if e.tightened {
        g.tightened += 1;
    }
    *g.transitions.entry(transition.to_string()).or_default() += 1;
    // Tightenings first among the examples: they are what a reviewer must see.
    if g.examples.len() < n {
        g.examples.push(e.clone());
    } else if e.tightened {
        if let Some(slot) = g.examples.iter_mut().find(|x| !x.tightened) {
            *slot = e.clone();
        }
    }
}

fn sorted(groups: BTreeMap<String, Group>) -> Vec<Group> {
    let mut v: Vec<Group> = groups.into_values().collect();
    v.sort_by(|a, b| {
        (b.tightened, b.calls)
            .cmp(&(a.tightened, a.calls))
            .then(a.key.cmp(&b.key))
    });
    v
}

impl Report {
    pub fn build(
        history: &History,
        judged: &[Judged],
        path: &Path,
        policy: &Policy,
        examples: usize,
    ) -> Self {
        let mut r = Report {
            policy: path.to_path_buf(),
            policy_sha256: policy.sha256().to_string(),
            journal: history.trust.clone(),
            calls: history.calls.len(),
            judged: 0,
            unchanged: 0,
            changed: 0,
            tightened: 0,
            loosened_unapproved: 0,
            not_reconstructible: 0,
            compared_with_same_policy_today: 0,
            machine_differences: 0,
            by_rule: Vec::new(),
            by_command: Vec::new(),
            changes: Vec::new(),
            not_reconstructible_calls: Vec::new(),
            machine_difference_calls: Vec::new(),
        };
        let mut by_rule = BTreeMap::new();
        let mut by_command = BTreeMap::new();
        for j in judged {
            let c = &history.calls[j.index];
            if j.same_policy_today {
                r.compared_with_same_policy_today += 1;
            }
            if j.drift.is_some() {
                r.machine_differences += 1;
                r.machine_difference_calls.push(example(c, j));
            }
            match &j.status {
                Status::NotReconstructible(_) => {
                    r.not_reconstructible += 1;
                    r.not_reconstructible_calls.push(example(c, j));
                }
                Status::Same => {
                    r.judged += 1;
                    r.unchanged += 1;
                }
                Status::Changed { tightened } => {
                    r.judged += 1;
                    r.changed += 1;
                    if *tightened {
                        r.tightened += 1;
                    }
                    let e = example(c, j);
                    if e.after.as_deref() == Some("allow") && !c.ran() {
                        r.loosened_unapproved += 1;
                    }
                    let transition = format!(
                        "{} -> {}",
                        e.before.as_deref().unwrap_or("?"),
                        e.after.as_deref().unwrap_or("?")
                    );
                    let rule = e.after_rule.clone().unwrap_or_else(|| "default".into());
                    add(&mut by_rule, &rule, &e, &transition, examples);
                    add(&mut by_command, &j.command, &e, &transition, examples);
                    r.changes.push(e);
                }
            }
        }
        r.by_rule = sorted(by_rule);
        r.by_command = sorted(by_command);
        r
    }
}

pub fn print_json(r: &Report) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(r)?);
    Ok(())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_groups(title: &str, groups: &[Group]) {
    if groups.is_empty() {
        return;
    }
    println!("\n{title}:");
    for g in groups {
        let transitions: Vec<String> = g
            .transitions
            .iter()
            .map(|(t, n)| format!("{t} ×{n}"))
            .collect();
        println!(
            "  {:<24} {}{}: {}",
            g.key,
            plural(g.calls, "call", "calls"),
            if g.tightened > 0 {
                format!(" ({} tightened)", g.tightened)
            } else {
                String::new()
            },
            transitions.join(", ")
        );
        for e in &g.examples {
            println!(
                "      {} {} {} seq {}: {} `{}` ({}) -> {} [{}]{}",
                if e.tightened { "!" } else { "-" },
                e.session,
                e.call_id,
                e.seq,
                e.tool,
                cut(&e.input, 80),
                e.outcome,
                e.after.as_deref().unwrap_or("?"),
                e.after_rule.as_deref().unwrap_or("default"),
                e.after_reason
                    .as_deref()
                    .map(|r| format!(": {}", cut(r, 120)))
                    .unwrap_or_default()
            );
        }
    }
}

pub fn print_text(r: &Report) {
    let j = &r.journal;
    println!(
        "journal {}: verified, intact (key id {}, {} entries, {} sealed by a signed checkpoint)",
        j.journal.display(),
        j.key_id,
        j.entries,
        j.sealed_size
    );
    if j.unsealed_left_out > 0 {
        println!(
            "  note: {} after the last signed checkpoint left out: not signed yet (a running \
             daemon signs them within moments; run again to include them)",
            plural(j.unsealed_left_out as usize, "entry", "entries")
        );
    }
    println!(
        "policy {} (sha256 {})",
        r.policy.display(),
        &r.policy_sha256
    );
    let by_recorded = r.judged - r.compared_with_same_policy_today;
    if by_recorded > 0 {
        println!(
            "compared with the recorded verdict for {} (the policy that judged {} is not at \
             hand: pass it with --baseline FILE to tell a policy change from a change of this \
             machine)",
            plural(by_recorded, "call", "calls"),
            if by_recorded == 1 { "it" } else { "them" }
        );
    }
    println!(
        "{} replayed: {} unchanged, {} changed ({} tightened), {} not reconstructible",
        plural(r.calls, "call", "calls"),
        r.unchanged,
        r.changed,
        r.tightened,
        r.not_reconstructible
    );
    print_groups("Changes by the rule that now decides", &r.by_rule);
    print_groups("Changes by command", &r.by_command);
    if !r.machine_difference_calls.is_empty() {
        println!(
            "\nJudged differently today by the same policy (this machine changed: files, \
             symlinks, the home), compared with today's verdict:"
        );
        for e in &r.machine_difference_calls {
            println!(
                "  {} {} seq {}: {} `{}`: recorded {}, today {}",
                e.session,
                e.call_id,
                e.seq,
                e.tool,
                cut(&e.input, 80),
                e.before.as_deref().unwrap_or("?"),
                e.drift.as_deref().unwrap_or("?")
            );
        }
    }
    if !r.not_reconstructible_calls.is_empty() {
        println!("\nNot reconstructible (not judged):");
        for e in &r.not_reconstructible_calls {
            println!(
                "  {} {} seq {}: {} ({}): {}",
                e.session,
                e.call_id,
                e.seq,
                e.tool,
                e.outcome,
                e.why_not_judged.as_deref().unwrap_or("")
            );
        }
    }
    if r.loosened_unapproved > 0 {
        println!(
            "\nnote: {} that a human denied or nobody approved would now be allowed",
            plural(r.loosened_unapproved, "call", "calls")
        );
    }
    if r.tightened > 0 {
        println!(
            "\nTIGHTENED: {} that ran (allowed or approved) would now be denied or need approval",
            plural(r.tightened, "call", "calls")
        );
    } else {
        println!("\nnothing that ran would now be denied or need approval");
    }
}
