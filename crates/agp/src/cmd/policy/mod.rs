//! `agp policy`: check, explain and test policies; import Claude Code permissions; replay the
//! journal's calls under a policy; suggest rules from what humans approved.

use std::path::{Path, PathBuf};

use agp_contracts::EvalContext;
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

mod check;
mod explain;
pub mod history;
mod import;
pub mod replay;
pub mod replay_print;
mod selftest;
mod suggest;
mod suggest_toml;

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
    /// Re-judge every tool call recorded in the journal with a policy and show what would
    /// change, grouped by rule and by command. Exits 1 when a call that ran (allowed, or
    /// approved) would now be denied or need approval, so a policy change can be reviewed in CI.
    #[command(after_help = EXIT_CODES_HELP, long_about = replay::LONG_ABOUT)]
    Replay(replay::ReplayArgs),
    /// Propose the narrowest rules (never broader than program plus subcommand) that would
    /// have allowed the calls humans approved and none they denied, as a policy fragment with
    /// [[test]] cases from the journal.
    #[command(after_help = EXIT_CODES_HELP, long_about = suggest::LONG_ABOUT)]
    Suggest(suggest::SuggestArgs),
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
        PolicyCommand::Check { file, json } => {
            check::check(&policy_path(home, file.as_deref())?, json)
        }
        PolicyCommand::Explain(a) => explain::explain(home, &a),
        PolicyCommand::Test { file, place, json } => {
            selftest::test(home, &policy_path(home, file.as_deref())?, &place, json)
        }
        PolicyCommand::ImportClaude {
            settings,
            output,
            json,
        } => import::import(&settings, output.as_deref(), json),
        PolicyCommand::Replay(a) => replay::run(home, &a),
        PolicyCommand::Suggest(a) => suggest::run(home, &a),
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
