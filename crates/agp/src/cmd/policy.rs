//! `agp policy`: check, explain and test policies; import Claude Code permissions.

use std::path::{Path, PathBuf};

use agp_contracts::{EvalContext, PolicyEngine as _, ToolCall, Verdict};
use agp_policy::lint::Severity;
use agp_policy::{Policy, PolicyError};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::exit::{Exit, EXIT_CODES_HELP};
use crate::home::Home;

/// Like `println!`, but a reader that goes away (`agp policy explain … | head`) ends the output
/// instead of panicking.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and lint a policy: syntax, duplicate ids, shadowed rules, unknown tools, broad
    /// allows, each with file:line:col. Exits 1 when there is an error.
    #[command(after_help = EXIT_CODES_HELP)]
    Check {
        /// Policy file [default: policy.toml in the agp home]
        file: Option<PathBuf>,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Show the verdict for one tool call and why, part by part.
    #[command(after_help = EXIT_CODES_HELP)]
    Explain(ExplainArgs),
    /// Run the policy's own [[test]] cases. Exits 1 when one fails.
    #[command(after_help = EXIT_CODES_HELP)]
    Test {
        /// Policy file [default: policy.toml in the agp home]
        file: Option<PathBuf>,
        #[command(flatten)]
        place: Place,
        /// Print the results as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Convert a Claude Code settings file's `permissions` (allow/ask/deny) into agp rules,
    /// printed as TOML.
    #[command(after_help = EXIT_CODES_HELP)]
    ImportClaude {
        /// Claude Code settings JSON (e.g. .claude/settings.json)
        settings: PathBuf,
        /// Write the policy to FILE (must not exist) instead of standard output
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print the policy text, the rule count and every warning as one JSON document
        #[arg(long)]
        json: bool,
    },
}

/// Where calls are judged from.
#[derive(Debug, Args)]
pub struct Place {
    /// Project root (`/` in rules) [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Tool name in Claude Code's vocabulary (Bash, Read, Write, Edit, WebFetch, mcp__…)
    #[arg(long)]
    pub tool: String,
    /// Tool input as a JSON object, e.g. '{"command":"git push --force"}'
    #[arg(long, value_name = "JSON")]
    pub input: String,
    /// Working directory of the call [default: the project root]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Policy file [default: policy.toml in the agp home]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub place: Place,
    /// Print the verdict as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, args: PolicyArgs) -> Result<Exit> {
    match args.command {
        PolicyCommand::Check { file, json } => check(&policy_path(home, file.as_deref())?, json),
        PolicyCommand::Explain(a) => explain(home, &a),
        PolicyCommand::Test { file, place, json } => {
            test(home, &policy_path(home, file.as_deref())?, &place, json)
        }
        PolicyCommand::ImportClaude {
            settings,
            output,
            json,
        } => import(&settings, output.as_deref(), json),
    }
}

fn policy_path(home: &Home, file: Option<&Path>) -> Result<PathBuf> {
    if let Some(f) = file {
        Ok(f.to_path_buf())
    } else {
        let p = home.policy();
        if !p.is_file() {
            bail!(
                "no policy at {} (run `agp init`, or pass a policy file)",
                p.display()
            );
        }
        Ok(p)
    }
}

/// Loads a policy; a malformed one prints every problem with file:line:col and yields `Err(exit)`.
fn load(path: &Path, invalid_exit: Exit) -> Result<std::result::Result<Policy, Exit>> {
    load_as(path, invalid_exit, false)
}

/// [`load`], printing the problems of a malformed policy as a JSON document with `json`.
fn load_as(
    path: &Path,
    invalid_exit: Exit,
    json: bool,
) -> Result<std::result::Result<Policy, Exit>> {
    match Policy::load(path) {
        Ok(p) => Ok(Ok(p)),
        Err(PolicyError::Invalid(diags)) if json => {
            let problems: Vec<_> = diags.iter().map(|d| finding_json("error", d)).collect();
            println!(
                "{}",
                serde_json::json!({"file": path, "ok": false, "valid": false,
                                   "findings": problems})
            );
            Ok(Err(invalid_exit))
        }
        Err(PolicyError::Invalid(diags)) => {
            for d in &diags {
                eprintln!("agp: error: {d}");
            }
            eprintln!(
                "agp: error: {} is not a valid policy ({} problem{})",
                path.display(),
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            Ok(Err(invalid_exit))
        }
        Err(e @ PolicyError::Read { .. }) => Err(e.into()),
    }
}

fn finding_json(severity: &str, d: &agp_policy::Diagnostic) -> serde_json::Value {
    serde_json::json!({"severity": severity, "file": d.source, "line": d.location.line,
                       "col": d.location.col, "message": d.message})
}

/// The docs promise a policy that defaults to require or deny: a call no rule foresaw must never
/// run unasked.
fn default_allow(path: &Path, policy: &Policy) -> Option<agp_policy::Diagnostic> {
    if policy.default_decision() != agp_contracts::Decision::Allow {
        return None;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (line, col) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            let t = l.trim_start();
            (t.starts_with("default") && t.contains('=')).then(|| (i + 1, l.len() - t.len() + 1))
        })
        .unwrap_or((1, 1));
    Some(agp_policy::Diagnostic {
        source: path.display().to_string(),
        location: agp_policy::file::Location { line, col },
        message: "default = \"allow\" lets every call no rule matches run without asking; \
                  agp policies default to \"require\" (ask a human) or \"deny\": set \
                  default = \"require\""
            .into(),
    })
}

fn check(path: &Path, json: bool) -> Result<Exit> {
    let policy = match load_as(path, Exit::Bad, json)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let mut findings: Vec<(Severity, agp_policy::Diagnostic)> = agp_policy::lint::lint(&policy)
        .into_iter()
        .map(|f| (f.severity, f.diagnostic))
        .collect();
    if let Some(d) = default_allow(path, &policy) {
        findings.insert(0, (Severity::Error, d));
    }
    let errors = findings
        .iter()
        .filter(|(s, _)| *s == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let level = |s: &Severity| match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    if json {
        let out = serde_json::json!({
            "file": path,
            "ok": errors == 0,
            "valid": true,
            "rules": policy.rules().len(),
            "tests": policy.tests().len(),
            "default": policy.default_decision().to_string(),
            "sha256": policy.sha256(),
            "errors": errors,
            "warnings": warnings,
            "findings": findings.iter().map(|(s, d)| finding_json(level(s), d)).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(if errors > 0 { Exit::Bad } else { Exit::Ok });
    }
    for (severity, d) in &findings {
        eprintln!("agp: {}: {d}", level(severity));
    }
    if errors > 0 {
        eprintln!(
            "agp: error: {}: {errors} error(s), {warnings} warning(s)",
            path.display()
        );
        return Ok(Exit::Bad);
    }
    println!(
        "{}: ok ({} rules, {} tests, default {}, {warnings} warning(s)); sha256 {}",
        path.display(),
        policy.rules().len(),
        policy.tests().len(),
        policy.default_decision(),
        policy.sha256()
    );
    Ok(Exit::Ok)
}

fn context(home: &Home, place: &Place) -> Result<EvalContext> {
    let project = match &place.project {
        Some(p) => p.clone(),
        None => std::env::current_dir().context("cannot determine the current directory")?,
    };
    let Some(user_home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        bail!("HOME is not set; it is needed to resolve `~/` in rules");
    };
    Ok(EvalContext {
        project_root: project,
        home: PathBuf::from(user_home),
        agp_home: home.root().to_path_buf(),
    })
}

fn explain(home: &Home, a: &ExplainArgs) -> Result<Exit> {
    let path = policy_path(home, a.policy.as_deref())?;
    let policy = match load(&path, Exit::CannotRun)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let input: serde_json::Value =
        serde_json::from_str(&a.input).context("--input is not valid JSON")?;
    let ctx = context(home, &a.place)?;
    let cwd = match &a.cwd {
        Some(c) if c.is_absolute() => c.clone(),
        Some(c) => std::env::current_dir()
            .context("cannot determine the current directory")?
            .join(c),
        None => ctx.project_root.clone(),
    };
    let call = ToolCall {
        id: "explain".into(),
        session: "explain".into(),
        tool_use_id: None,
        tool: agp_contracts::Tool::parse_name(&a.tool),
        input,
        cwd,
    };
    let verdict = policy.evaluate(&call, &ctx);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print_verdict(&verdict, &path);
    }
    Ok(Exit::Ok)
}

fn print_verdict(v: &Verdict, path: &Path) {
    println!("decision: {}", v.decision);
    println!("reason:   {}", v.reason);
    println!(
        "decided by: {}",
        v.rule_id.as_deref().unwrap_or("the policy default")
    );
    if let Some(part) = &v.deciding_part {
        println!("deciding part: {part}");
    }
    if let Some(a) = &v.approval {
        let who = if a.approvers.is_empty() {
            "any approver".to_string()
        } else {
            a.approvers.join(", ")
        };
        let remember = a
            .remember_secs
            .map(|s| format!(", remembered for {s}s in the session"))
            .unwrap_or_default();
        println!("approval: {} of {who}{remember}", a.quorum);
    }
    println!("policy:   {} (sha256 {})", path.display(), v.policy_sha256);
    println!("parts:");
    for p in &v.parts {
        println!(
            "  {:<7} {}  [{}] {}",
            p.decision.as_str(),
            p.part,
            p.rule_id.as_deref().unwrap_or("default"),
            p.reason
        );
    }
}

fn test(home: &Home, path: &Path, place: &Place, json: bool) -> Result<Exit> {
    let policy = match load_as(path, Exit::Bad, json)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let ctx = context(home, place)?;
    let outcomes = agp_policy::selftest::run_tests(&policy, &ctx);
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    if json {
        let out = serde_json::json!({
            "file": path,
            "ok": failed == 0,
            "passed": outcomes.len() - failed,
            "failed": failed,
            "tests": outcomes.iter().map(|o| serde_json::json!({
                "name": o.test.name,
                "line": o.test.location.line,
                "decision": o.verdict.decision.to_string(),
                "ok": o.failure.is_none(),
                "failure": o.failure,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(if failed > 0 { Exit::Bad } else { Exit::Ok });
    }
    if outcomes.is_empty() {
        println!("{}: no [[test]] cases", path.display());
        return Ok(Exit::Ok);
    }
    for o in &outcomes {
        match &o.failure {
            None => println!("ok    {} ({})", o.test.name, o.verdict.decision),
            Some(why) => {
                println!(
                    "FAIL  {} ({}:{}): {why}",
                    o.test.name,
                    path.display(),
                    o.test.location.line
                );
            }
        }
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    Ok(if failed > 0 { Exit::Bad } else { Exit::Ok })
}

fn import(settings: &Path, output: Option<&Path>, json: bool) -> Result<Exit> {
    let text = std::fs::read_to_string(settings)
        .with_context(|| format!("cannot read {}", settings.display()))?;
    let imported = agp_policy::import::import_claude(&text, &settings.display().to_string())
        .with_context(|| format!("cannot import {}", settings.display()))?;
    if let Some(out) = output {
        crate::cmd::init::write_file(out, &imported.toml, false)?;
    }
    if json {
        let doc = serde_json::json!({
            "settings": settings,
            "output": output,
            "rules": imported.rules,
            "toml": imported.toml,
            "skipped": imported.skipped.iter()
                .map(|(entry, why)| serde_json::json!({"entry": entry, "why": why}))
                .collect::<Vec<_>>(),
            "warnings": imported.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(Exit::Ok);
    }
    for (entry, why) in &imported.skipped {
        eprintln!("agp: warning: not converted: {entry}: {why}");
    }
    for warning in &imported.warnings {
        eprintln!("agp: warning: {warning}");
    }
    if let Some(out) = output {
        eprintln!(
            "wrote {} rule(s) to {} (check it with `agp policy check {}`)",
            imported.rules,
            out.display(),
            out.display()
        );
    } else {
        print!("{}", imported.toml);
    }
    Ok(Exit::Ok)
}
