//! `agp policy replay`: re-judge the journal's recorded calls with a policy and report what
//! would change.
//!
//! A call's recorded verdict is compared with today's verdict of the policy under review. When
//! the policy that judged the call at the time is at hand (the candidate itself, the policy in
//! force, or a `--baseline` file, matched by sha256) and the verdicts differ, it judges the call
//! again today and that is the comparison: both verdicts then see the same machine, so a
//! difference is the policy's; a recorded verdict the same policy no longer reproduces is
//! reported as a machine difference (files, symlinks, the home) rather than guessed at. Calls
//! that cannot be rebuilt (redacted inputs, inputs refused before judging, unknown repository)
//! are listed, not judged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use agp_contracts::{Decision, EvalContext, PolicyEngine as _, Tool, ToolCall, Verdict};
use agp_policy::Policy;
use anyhow::{bail, Context, Result};
use clap::Args;

use super::history::{self, Filter, History, Recorded};
use super::{load, policy_path, replay_print};
use crate::exit::Exit;
use crate::home::Home;

pub const LONG_ABOUT: &str = "Re-judge every tool call recorded in the journal with a policy \
    (default: the policy in force) and show what would change (allow -> require, require -> \
    deny, deny -> allow, ...), grouped by the rule that now decides and by command (program \
    plus subcommand), with counts and examples.\n\n\
    The journal is verified first (signatures, hash chain, Merkle tree) with the home's key or \
    --key; a journal that is not intact is refused (exit 2), and only lines a signed checkpoint \
    covers are read (one after it needs no key to forge). Calls that cannot be rebuilt exactly are \
    listed apart and not judged: an input the journal holds redacted (a secret was removed), \
    an input refused before the policy judged it, a session whose repository is unknown. \
    Calls are judged on this machine today: paths are resolved against today's files.\n\n\
    Exits 1 when a call that ran (allowed, or approved by a human) would now be denied or \
    need approval: a policy change that tightens what agents already do, for review in CI.";

/// Which part of the journal to read, and how to trust it.
#[derive(Debug, Args)]
pub struct Scope {
    /// Only the calls of this session
    #[arg(long, value_name = "ID", conflicts_with = "since")]
    pub session: Option<String>,
    /// Only calls at or after TIME: RFC 3339, a date, or a duration back from now (2h, 7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Journal folder [default: <home>/journal]
    #[arg(long, value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// Verifier key the journal is checked with [default: <home>/keys/journal.pub]
    #[arg(long, value_name = "VKEY_OR_FILE")]
    pub key: Option<String>,
}

impl Scope {
    /// Verifies and reads the journal; a `--session` the journal does not have is an error.
    pub fn read(&self, home: &Home) -> Result<History> {
        let key = crate::cmd::keygen::resolve_verifier(home, self.key.as_deref())?;
        let dir = self.journal.clone().unwrap_or_else(|| home.journal_dir());
        let filter = Filter {
            session: self.session.clone(),
            since: self
                .since
                .as_deref()
                .map(history::parse_since)
                .transpose()?,
        };
        let history = history::read(&dir, &key, &filter)?;
        if let (Some(s), false) = (&self.session, history.session_found) {
            bail!("no such session in the journal: {s} (`agp sessions` lists them)");
        }
        Ok(history)
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Policy to judge with [default: policy.toml in the agp home, the policy in force]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// A policy that judged calls when they were recorded (repeatable; matched by sha256),
    /// to tell a policy change from a difference of this machine. The policy in force is used
    /// this way on its own.
    #[arg(long, value_name = "FILE")]
    pub baseline: Vec<PathBuf>,
    #[command(flatten)]
    pub scope: Scope,
    /// Examples shown per group
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub examples: usize,
    /// Print the whole report as one JSON document
    #[arg(long)]
    pub json: bool,
}

/// What comparing one call found.
#[derive(Debug, Clone)]
pub enum Status {
    /// Same decision.
    Same,
    /// The decision changes; `tightened` when the call ran and now would not run unasked.
    Changed { tightened: bool },
    /// Not judged: the call cannot be rebuilt as it was judged.
    NotReconstructible(String),
}

/// One call, re-judged.
#[derive(Debug, Clone)]
pub struct Judged {
    pub index: usize,
    pub status: Status,
    /// The comparison basis: today's verdict of the policy that judged the call when it is at
    /// hand, else the recorded decision.
    pub before: Option<Decision>,
    /// The recorded policy was at hand: a difference was re-checked with it today.
    pub same_policy_today: bool,
    /// The recorded policy judges the call differently today than it did then.
    pub drift: Option<Decision>,
    pub after: Option<Verdict>,
    /// Program plus subcommand (`cargo test`), or the tool.
    pub command: String,
}

/// Where calls of a session are judged from.
fn eval_context(agp_home: &Path, user_home: &Path, repo: &Path) -> EvalContext {
    EvalContext {
        project_root: repo.to_path_buf(),
        home: user_home.to_path_buf(),
        agp_home: agp_home.to_path_buf(),
    }
}

/// The user's home for `~/` in rules: $HOME, as the daemon resolves it.
pub fn user_home() -> PathBuf {
    crate::app::assemble::user_home()
}

/// Why `c` cannot be judged again as it was, if it cannot.
pub fn unreconstructible(c: &Recorded) -> Option<String> {
    let Some(d) = &c.decided else {
        return Some("the journal has no verdict for it".into());
    };
    if let Some(e) = &c.input_error {
        return Some(format!("its input was refused before judging ({e})"));
    }
    if c.input.is_null() || !d.judged {
        return Some("its input was refused before the policy judged it".into());
    }
    if c.repo.is_none() {
        return Some("the journal has no session.started naming its repository".into());
    }
    match (
        &c.input_sha256,
        agp_contracts::canonical::sha256_of_value(&c.input),
    ) {
        (Some(want), Ok(got)) if *want == got => None,
        (None, _) => Some("the journal has no hash of its input".into()),
        _ => Some(
            "the journal holds its input redacted (a secret was removed): the call as sent \
             cannot be rebuilt, and judging the redacted text would be a guess"
                .into(),
        ),
    }
}

pub fn tool_call(c: &Recorded) -> ToolCall {
    ToolCall {
        id: c.call_id.clone(),
        session: c.session.clone(),
        tool_use_id: None,
        tool: Tool::parse_name(&c.tool),
        input: c.input.clone(),
        cwd: c.cwd.clone(),
    }
}

/// Program plus subcommand of a part label (`cargo test --all` → `cargo test`), `write` /
/// `read` for files a command touches, else the tool.
pub fn command_key(tool: &str, part: Option<&str>) -> String {
    if tool != "Bash" {
        return tool.to_string();
    }
    let Some(part) = part else {
        return "Bash".into();
    };
    if let Some((kind, _)) = part.split_once(':') {
        if matches!(kind, "write" | "read" | "foreign") && !kind.contains(' ') {
            return kind.to_string();
        }
    }
    let words: Vec<agp_policy::shell::Word> = part
        .split_whitespace()
        .map(agp_policy::shell::Word::literal)
        .collect();
    let Some(first) = words.first() else {
        return "Bash".into();
    };
    let program = agp_policy::shell::basename(&first.text);
    match agp_policy::programs::subcommand(program, &words[1..]) {
        agp_policy::programs::Subcommand::Leading(sub) => format!("{program} {}", sub.text),
        _ => program.to_string(),
    }
}

/// The deciding part of a verdict (the whole call when it has one part).
fn deciding(v: &Verdict) -> Option<&str> {
    v.deciding_part
        .as_deref()
        .or_else(|| v.parts.first().map(|p| p.part.as_str()))
}

/// Re-judges one call with `policy`; `baselines` are policies by sha256.
fn judge_one(
    i: usize,
    c: &Recorded,
    policy: &Policy,
    baselines: &HashMap<String, &Policy>,
    ctx: &EvalContext,
) -> Judged {
    let mut j = Judged {
        index: i,
        status: Status::Same,
        before: None,
        same_policy_today: false,
        drift: None,
        after: None,
        command: command_key(&c.tool, None),
    };
    if let Some(why) = unreconstructible(c) {
        j.status = Status::NotReconstructible(why);
        return j;
    }
    let Some(d) = &c.decided else {
        return j;
    };
    let call = tool_call(c);
    let after = policy.evaluate(&call, ctx);
    j.before = Some(d.decision);
    // The policy that judged the call, at hand: a difference is re-checked with it today, so
    // one that comes from this machine is not reported as the policy's. (When the verdicts
    // agree, nothing changes whatever the machine did.)
    if let Some(base) = baselines.get(&d.policy_sha256) {
        j.same_policy_today = true;
        if after.decision != d.decision {
            let today = if base.sha256() == policy.sha256() {
                after.decision
            } else {
                base.evaluate(&call, ctx).decision
            };
            if today != d.decision {
                j.drift = Some(today);
            }
            j.before = Some(today);
        }
    }
    let before = j.before.unwrap_or(d.decision);
    j.command = command_key(&c.tool, deciding(&after));
    if after.decision != before {
        j.status = Status::Changed {
            tightened: c.ran() && after.decision > Decision::Allow,
        };
    }
    j.after = Some(after);
    j
}

/// Calls a judging thread takes at a time: small batches taken in turn, because on a shared
/// machine one thread can be descheduled for a while and a fixed half of the calls would then
/// wait for it.
const BATCH: usize = 512;

/// Judges every call, on all CPUs: the policy is parsed once and shared.
pub fn judge_all(
    agp_home: &Path,
    user_home: &Path,
    history: &History,
    policy: &Policy,
    baselines: &HashMap<String, &Policy>,
) -> Vec<Judged> {
    let mut contexts: HashMap<&Path, EvalContext> = HashMap::new();
    for c in &history.calls {
        if let Some(repo) = &c.repo {
            contexts
                .entry(repo.as_path())
                .or_insert_with(|| eval_context(agp_home, user_home, repo));
        }
    }
    let fallback = eval_context(agp_home, user_home, Path::new("/"));
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let calls = &history.calls;
    let mut judged: Vec<Judged> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (contexts, fallback, next) = (&contexts, &fallback, &next);
                s.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let start = next.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                        if start >= calls.len() {
                            return out;
                        }
                        for (i, c) in calls.iter().enumerate().skip(start).take(BATCH) {
                            let ctx = c
                                .repo
                                .as_deref()
                                .and_then(|r| contexts.get(r))
                                .unwrap_or(fallback);
                            out.push(judge_one(i, c, policy, baselines, ctx));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    judged.sort_unstable_by_key(|j| j.index);
    judged
}

/// Loads `path` as the policy under review; a malformed one prints its problems (exit 2).
fn load_candidate(path: &Path) -> Result<std::result::Result<Policy, Exit>> {
    load(path, Exit::CannotRun)
}

pub fn run(home: &Home, a: &ReplayArgs) -> Result<Exit> {
    let path = policy_path(home, a.policy.as_deref())?;
    let policy = match load_candidate(&path)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let mut extra = Vec::new();
    for b in &a.baseline {
        match load(b, Exit::CannotRun)? {
            Ok(p) => extra.push(p),
            Err(exit) => return Ok(exit),
        }
    }
    // The policy in force judged most recorded calls: it is a baseline of its own, when it
    // loads (a broken one is simply not used as one).
    let in_force = home.policy();
    if a.policy.is_some() && in_force.is_file() {
        if let Ok(p) = Policy::load(&in_force) {
            extra.push(p);
        }
    }
    let mut baselines: HashMap<String, &Policy> = HashMap::new();
    baselines.insert(policy.sha256().to_string(), &policy);
    for p in &extra {
        baselines.entry(p.sha256().to_string()).or_insert(p);
    }
    let history = a.scope.read(home).context("cannot replay the journal")?;
    let judged = judge_all(home.root(), &user_home(), &history, &policy, &baselines);
    let report = replay_print::Report::build(&history, &judged, &path, &policy, a.examples);
    if a.json {
        replay_print::print_json(&report)?;
    } else {
        replay_print::print_text(&report);
    }
    Ok(if report.tightened > 0 {
        Exit::Bad
    } else {
        Exit::Ok
    })
}
