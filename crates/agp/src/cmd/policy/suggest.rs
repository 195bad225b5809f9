//! `agp policy suggest`: rules that would have allowed what humans approved, and none of what
//! they denied.
//!
//! Each approved call is judged again by the policy it would join; only the parts the policy
//! *default* sent to a human get a rule (a part a rule or guard requires or denies is not
//! overridden: an allow rule cannot beat it, and a denial stays one). A command becomes
//! `Bash(PROGRAM SUBCOMMAND *)` when agp's model of the program says where its subcommand is
//! (`programs::subcommand`), else the exact command; a file becomes the exact path anchored at
//! the project, the home or the root; a fetch its domain. Every suggestion is then checked with
//! the real engine, against the policy plus the fragment and the fragment alone: a rule that
//! lets a denied call through is narrowed to the exact approved commands, and dropped when even
//! those would, and the report says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use agp_contracts::{Decision, EvalContext, PolicyEngine as _, Verdict};
use agp_policy::programs::Subcommand;
use agp_policy::shell::{self, Part};
use agp_policy::Policy;
use anyhow::{Context, Result};
use clap::Args;

use super::history::{Outcome, Recorded};
use super::replay::{tool_call, unreconstructible, user_home, Scope};
use super::{load, policy_path, suggest_toml};
use crate::exit::Exit;
use crate::home::Home;

pub const LONG_ABOUT: &str = "From the calls humans approved (and denied) in the journal, \
    propose the narrowest rules in the policy file's syntax that would have allowed the \
    approved calls and none of the denied ones, printed as a policy fragment with [[test]] \
    cases taken from the journal; each rule's comment says how many calls it covers.\n\n\
    Rules are never broader than a program plus its subcommand (`Bash(cargo test *)`, never \
    `Bash(*)`); programs without subcommands get their exact approved commands. Only what the \
    policy's default sent to a human gets a rule: a part a rule or a guard requires or denies \
    is left alone (an allow rule does not override it), and the report says why. A suggestion \
    that would also allow a denied call is narrowed to the exact approved commands, or dropped, \
    and the report says so. The journal is verified as for `agp policy replay` (a journal that \
    is not intact is refused, exit 2). Standard output is the fragment alone, ready for a file; \
    notes go to standard error.";

#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// The policy the fragment is for [default: policy.toml in the agp home]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub scope: Scope,
    /// Print the fragment, the rules and every note as one JSON document
    #[arg(long)]
    pub json: bool,
}

/// One suggested rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Suggested {
    pub id: String,
    /// `cargo test`, `write`, `WebFetch`, …
    pub key: String,
    pub matchers: Vec<String>,
    /// The exact approved forms, used when the broad matcher must be narrowed.
    #[serde(skip)]
    pub exact: BTreeSet<String>,
    /// Approved calls (indices into the history) whose parts it matches.
    #[serde(skip)]
    pub sources: BTreeSet<usize>,
    /// Approved calls the final fragment allows thanks to it.
    pub covers: usize,
    pub narrowed: Option<String>,
}

/// A call or a suggestion left out, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Note {
    pub session: String,
    pub call_id: String,
    pub seq: u64,
    pub why: String,
}

fn note(c: &Recorded, why: impl Into<String>) -> Note {
    Note {
        session: c.session.clone(),
        call_id: c.call_id.clone(),
        seq: c.seq,
        why: why.into(),
    }
}

#[derive(Debug, Default)]
pub struct Suggestion {
    pub rules: Vec<Suggested>,
    pub dropped: Vec<(Suggested, String)>,
    pub skipped: Vec<Note>,
    pub still_required: Vec<Note>,
    pub approved: Vec<usize>,
    pub denied: Vec<usize>,
}

/// A matcher for one part the default sent to a human: (group key, broad, exact).
type Candidate = (String, String, String);

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', ']', '{', '}', '!', '(', ')'])
}

/// `path` as a rule anchor: `/x` in the project, `~/x` in the home, `//x` elsewhere.
fn anchor(raw: &str, cwd: &Path, ctx: &EvalContext) -> Option<String> {
    let canon = agp_policy::paths::canonicalize_lenient;
    let home = canon(&ctx.home);
    let p = agp_policy::paths::resolve(raw, &canon(cwd), &home);
    let text = if let Some(rel) = agp_policy::paths::relative_to(&p, &canon(&ctx.project_root)) {
        format!("/{}", rel.display())
    } else if let Some(rel) = agp_policy::paths::relative_to(&p, &home) {
        format!("~/{}", rel.display())
    } else {
        format!("/{}", p.display())
    };
    (!has_glob(&text) && text.trim_end_matches('/').len() > 1).then_some(text)
}

/// The program word an allow rule matches (`/usr/bin/git` → `git`; other paths stay).
fn program_word(argv0: &str) -> &str {
    match argv0.rsplit_once('/') {
        Some((
            "/bin" | "/usr/bin" | "/usr/local/bin" | "/sbin" | "/usr/sbin" | "/usr/local/sbin",
            base,
        )) => base,
        _ => argv0,
    }
}

fn command_candidate(cmd: &shell::SimpleCommand) -> Result<Candidate, String> {
    let Some(argv0) = cmd.argv.first() else {
        return Err("an empty command".into());
    };
    if cmd.dynamic_tail {
        return Err(format!(
            "`{}` gets arguments only known at run time (xargs)",
            cmd.line()
        ));
    }
    let program = program_word(&argv0.text);
    let mut exact = program.to_string();
    for w in cmd.args() {
        exact.push(' ');
        exact.push_str(&w.text);
    }
    if exact.contains('*') || exact.contains(')') {
        return Err(format!(
            "`{exact}` holds `*` or `)`, which a rule cannot match literally"
        ));
    }
    let exact_m = format!("Bash({exact})");
    match agp_policy::programs::subcommand(cmd.name(), cmd.args()) {
        Subcommand::Leading(sub) if !has_glob(&sub.text) => Ok((
            format!("{program} {}", sub.text),
            format!("Bash({program} {} *)", sub.text),
            exact_m,
        )),
        _ => Ok((program.to_string(), exact_m.clone(), exact_m)),
    }
}

/// Matchers for the parts of `verdict` the policy default decided; `Err` names why the call
/// cannot be allowed by a new rule.
fn candidates(c: &Recorded, v: &Verdict, ctx: &EvalContext) -> Result<Vec<Candidate>, String> {
    let analysis = (c.tool == "Bash").then(|| {
        shell::analyze(
            c.input
                .get("command")
                .and_then(|x| x.as_str())
                .unwrap_or(""),
        )
    });
    let mut out = Vec::new();
    for p in v.parts.iter().filter(|p| p.decision != Decision::Allow) {
        if let Some(id) = &p.rule_id {
            return Err(if p.decision == Decision::Deny {
                format!("`{}` is now denied by `{id}`: {}", p.part, p.reason)
            } else {
                format!(
                    "`{}` needs approval because of `{id}` ({}); an allow rule does not \
                     override it",
                    p.part, p.reason
                )
            });
        }
        let label = p.part.as_str();
        let cand = if let Some(a) = &analysis {
            let part = a.parts.iter().find(|x| x.label() == label);
            match part {
                Some(Part::Command(cmd)) => command_candidate(cmd)?,
                Some(Part::Write { path, .. }) => {
                    let anchored = anchor(&path.text, &c.cwd, ctx)
                        .ok_or_else(|| format!("cannot name `{}` in a rule", path.text))?;
                    let m = format!("Edit({anchored})");
                    ("write".into(), m.clone(), m)
                }
                Some(Part::Read { path, .. }) => {
                    let anchored = anchor(&path.text, &c.cwd, ctx)
                        .ok_or_else(|| format!("cannot name `{}` in a rule", path.text))?;
                    let m = format!("Read({anchored})");
                    ("read".into(), m.clone(), m)
                }
                _ => return Err(format!("`{label}` cannot be judged statically")),
            }
        } else if let Some((tool, target)) = label.split_once(':').filter(|_| c.tool != "Bash") {
            if tool == "WebFetch" {
                let host = agp_policy::matcher::url_host(target)
                    .ok_or_else(|| format!("no host in `{target}`"))?;
                let m = format!("WebFetch(domain:{host})");
                ("WebFetch".into(), m.clone(), m)
            } else {
                let class =
                    match agp_policy::matcher::file_class(&agp_contracts::Tool::parse_name(tool)) {
                        Some(agp_policy::matcher::FileClass::Write) => "Edit",
                        Some(agp_policy::matcher::FileClass::Read) => "Read",
                        None => return Err(format!("`{label}` is not a file or a fetch")),
                    };
                let anchored = anchor(target, &c.cwd, ctx)
                    .ok_or_else(|| format!("cannot name `{target}` in a rule"))?;
                let m = format!("{class}({anchored})");
                (class.to_lowercase(), m.clone(), m)
            }
        } else if label == c.tool && !has_glob(label) {
            (c.tool.clone(), c.tool.clone(), c.tool.clone())
        } else {
            return Err(format!("`{label}` cannot be named in a rule"));
        };
        out.push(cand);
    }
    Ok(out)
}

fn slug(key: &str) -> String {
    let s: String = key
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let s: String = s.chars().take(40).collect();
    if s.is_empty() {
        "rule".into()
    } else {
        s
    }
}

/// Judges with `base` plus the suggested rules, and with the rules alone.
struct Judge<'a> {
    base: &'a Policy,
    history: &'a [Recorded],
    ctx: &'a dyn Fn(&Recorded) -> EvalContext,
}

impl Judge<'_> {
    fn policies(&self, rules: &[Suggested]) -> Result<(Policy, Policy)> {
        let fragment = suggest_toml::rules_toml(rules);
        let merged = Policy::from_str(
            &format!("{}\n{fragment}", self.base.text()),
            "policy + suggestions",
        )
        .context("the suggested rules do not load with the policy")?;
        let alone = Policy::from_str(&fragment, "suggestions")
            .context("the suggested rules do not load")?;
        Ok((merged, alone))
    }

    fn verdict(&self, p: &Policy, i: usize) -> Verdict {
        let c = &self.history[i];
        p.evaluate(&tool_call(c), &(self.ctx)(c))
    }
}

pub fn suggest(
    base: &Policy,
    history: &[Recorded],
    ctx: &dyn Fn(&Recorded) -> EvalContext,
) -> Result<Suggestion> {
    let mut s = Suggestion::default();
    for (i, c) in history.iter().enumerate() {
        let wanted = match &c.outcome {
            Outcome::Approved { .. } => true,
            Outcome::HumanDenied { .. } => false,
            _ => continue,
        };
        if let Some(why) = unreconstructible(c) {
            s.skipped.push(note(c, format!("not used: {why}")));
            continue;
        }
        if wanted {
            s.approved.push(i);
        } else {
            s.denied.push(i);
        }
    }
    let judge = Judge { base, history, ctx };
    let mut by_matcher: BTreeMap<String, Suggested> = BTreeMap::new();
    for &i in &s.approved {
        let c = &history[i];
        let v = judge.verdict(base, i);
        if v.decision == Decision::Allow {
            s.skipped.push(note(c, "already allowed by the policy"));
            continue;
        }
        match candidates(c, &v, &ctx(c)) {
            Err(why) => s.skipped.push(note(c, why)),
            Ok(cands) => {
                for (key, broad, exact) in cands {
                    let r = by_matcher
                        .entry(broad.clone())
                        .or_insert_with(|| Suggested {
                            id: String::new(),
                            key,
                            matchers: vec![broad],
                            exact: BTreeSet::new(),
                            sources: BTreeSet::new(),
                            covers: 0,
                            narrowed: None,
                        });
                    r.exact.insert(exact);
                    r.sources.insert(i);
                }
            }
        }
    }
    let mut rules: Vec<Suggested> = by_matcher.into_values().collect();
    let mut used = BTreeSet::new();
    for r in &mut rules {
        let base_id = format!("suggested-{}", slug(&r.key));
        let mut id = base_id.clone();
        let mut n = 2;
        while used.contains(&id) || base.rules().iter().any(|x| x.id == id) {
            id = format!("{base_id}-{n}");
            n += 1;
        }
        used.insert(id.clone());
        r.id = id;
    }
    // Narrow or drop what lets a denied call through, until nothing does. Each round narrows
    // or drops at least one rule, so this ends.
    for _ in 0..=rules.len() * 2 + 1 {
        let (merged, alone) = judge.policies(&rules)?;
        let mut culprits: BTreeMap<String, String> = BTreeMap::new();
        for &d in &s.denied {
            for p in [&merged, &alone] {
                let v = judge.verdict(p, d);
                if v.decision != Decision::Allow {
                    continue;
                }
                let c = &history[d];
                for part in &v.parts {
                    if let Some(id) = &part.rule_id {
                        if rules.iter().any(|r| &r.id == id) {
                            culprits.entry(id.clone()).or_insert_with(|| {
                                format!(
                                    "it would also allow {} `{}` ({} {}, seq {}: {})",
                                    c.tool,
                                    c.input
                                        .get("command")
                                        .and_then(|v| v.as_str())
                                        .map_or_else(|| c.input.to_string(), str::to_string),
                                    c.session,
                                    c.call_id,
                                    c.seq,
                                    c.outcome.label()
                                )
                            });
                        }
                    }
                }
            }
        }
        if culprits.is_empty() {
            break;
        }
        let mut kept = Vec::new();
        for mut r in rules {
            match culprits.get(&r.id) {
                None => kept.push(r),
                Some(why)
                    if r.narrowed.is_none()
                        && r.matchers != r.exact.iter().cloned().collect::<Vec<_>>() =>
                {
                    r.matchers = r.exact.iter().cloned().collect();
                    r.narrowed = Some(format!("narrowed to the exact approved forms: {why}"));
                    kept.push(r);
                }
                Some(why) => {
                    let why = format!("dropped: {why}");
                    s.dropped.push((r, why));
                }
            }
        }
        rules = kept;
    }
    // What the final fragment covers.
    let (merged, _) = judge.policies(&rules)?;
    for &i in &s.approved {
        if judge.verdict(base, i).decision == Decision::Allow {
            continue;
        }
        let v = judge.verdict(&merged, i);
        if v.decision == Decision::Allow {
            let ids: BTreeSet<&str> = v
                .parts
                .iter()
                .filter_map(|p| p.rule_id.as_deref())
                .collect();
            for r in &mut rules {
                if ids.contains(r.id.as_str()) {
                    r.covers += 1;
                }
            }
        } else if s.skipped.iter().all(|n| n.seq != history[i].seq) {
            let why = match s.dropped.iter().find(|(r, _)| r.sources.contains(&i)) {
                Some((r, why)) => format!("no rule suggested: {} was {why}", r.matchers.join(", ")),
                None => format!("would still need approval: {}", v.reason),
            };
            s.still_required.push(note(&history[i], why));
        }
    }
    rules.retain(|r| r.covers > 0);
    s.rules = rules;
    Ok(s)
}

pub fn run(home: &Home, a: &SuggestArgs) -> Result<Exit> {
    let path = policy_path(home, a.policy.as_deref())?;
    let base = match load(&path, Exit::CannotRun)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let history = a.scope.read(home).context("cannot read the journal")?;
    let user_home = user_home();
    let agp_home = home.root().to_path_buf();
    let ctx = |c: &Recorded| EvalContext {
        project_root: c.repo.clone().unwrap_or_else(|| PathBuf::from("/")),
        home: user_home.clone(),
        agp_home: agp_home.clone(),
    };
    let s = suggest(&base, &history.calls, &ctx)?;
    let doc = suggest_toml::fragment(&s, &history.calls, &path, &ctx)?;
    suggest_toml::print(&s, &doc, &history, a.json)?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(line: &str) -> Result<Candidate, String> {
        let a = shell::analyze(line);
        let (_, cmd) = a.commands().next().expect("a command");
        command_candidate(cmd)
    }

    #[test]
    fn commands_become_program_plus_subcommand_or_the_exact_line() {
        let (key, broad, exact) = cand("git push origin main").unwrap();
        assert_eq!(key, "git push");
        assert_eq!(broad, "Bash(git push *)");
        assert_eq!(exact, "Bash(git push origin main)");
        assert_eq!(
            cand("cargo test --workspace").unwrap().1,
            "Bash(cargo test *)"
        );
        // Options before the subcommand: no `git status *` pattern matches this line.
        assert_eq!(
            cand("git -C sub status").unwrap().1,
            "Bash(git -C sub status)"
        );
        // No subcommand: the exact command, never the whole program.
        assert_eq!(cand("rm notes.txt").unwrap().1, "Bash(rm notes.txt)");
        assert_eq!(cand("/usr/bin/git status").unwrap().1, "Bash(git status *)");
        // A program outside the system's directories keeps its path, as allow rules see it.
        assert_eq!(
            cand("/tmp/x/git status").unwrap().1,
            "Bash(/tmp/x/git status *)"
        );
    }

    #[test]
    fn what_a_rule_cannot_say_literally_is_not_suggested() {
        assert!(cand("rm 'a*b'").is_err());
        assert!(cand("echo 'a)b'").is_err());
        let a = shell::analyze("find . -name x | xargs rm");
        let rm = a.commands().find(|(_, c)| c.name() == "rm").unwrap().1;
        assert!(command_candidate(rm).is_err());
    }

    #[test]
    fn paths_are_anchored_at_the_project_the_home_or_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let home = dir.path().join("home");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let ctx = EvalContext {
            project_root: root.clone(),
            home: home.clone(),
            agp_home: home.join(".agp"),
        };
        assert_eq!(
            anchor("src/a.rs", &root, &ctx).as_deref(),
            Some("/src/a.rs")
        );
        assert_eq!(
            anchor("../a.rs", &root.join("src"), &ctx).as_deref(),
            Some("/a.rs")
        );
        assert_eq!(anchor("~/notes", &root, &ctx).as_deref(), Some("~/notes"));
        assert_eq!(
            anchor("/etc/hosts", &root, &ctx).as_deref(),
            Some("//etc/hosts")
        );
        // Glob characters would widen the rule; the project root itself is every file.
        assert_eq!(anchor("src/[ab].rs", &root, &ctx), None);
        assert_eq!(anchor(".", &root, &ctx), None);
    }
}
