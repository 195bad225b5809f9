//! Command-line surface. Each subcommand's arguments live next to its implementation in `cmd/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::exit::EXIT_CODES_HELP;

#[derive(Debug, Parser)]
#[command(
    name = "agp",
    version,
    about = "agp, the agent governance plane: every tool call an AI coding agent attempts is \
             checked against policy, approved by a human when policy says so, run in a sandbox \
             and written to a signed audit journal.",
    after_help = EXIT_CODES_HELP,
    after_long_help = EXIT_CODES_HELP,
)]
pub struct Cli {
    /// agp home directory [default: $AGP_HOME, else ~/.agp]
    // AGP_HOME is read in `cmd::dispatch`, not by clap: clap would count the variable as a
    // given `--home` and print it in every usage line as if it were required.
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an agp home with a commented config.toml, a default policy and an empty journal.
    #[command(after_help = EXIT_CODES_HELP)]
    Init(cmd::init::InitArgs),
    /// Create the Ed25519 journal signing key (or rotate it).
    #[command(after_help = EXIT_CODES_HELP, long_about = cmd::keygen::LONG_ABOUT)]
    Keygen(cmd::keygen::KeygenArgs),
    /// Show the journal public key (C2SP verifier key, PEM, allowed_signers).
    #[command(after_help = EXIT_CODES_HELP)]
    Key(cmd::key::KeyArgs),
    /// Verify the journal offline: chain, Merkle tree, signed checkpoints.
    #[command(after_help = EXIT_CODES_HELP, long_about = cmd::verify::LONG_ABOUT)]
    Verify(cmd::verify::VerifyArgs),
    /// Inspect the journal: show events, inclusion and consistency proofs.
    #[command(after_help = EXIT_CODES_HELP)]
    Journal(cmd::journal::JournalArgs),
    /// Check, explain and test policies; import Claude Code permissions.
    #[command(after_help = EXIT_CODES_HELP)]
    Policy(cmd::policy::PolicyArgs),
    /// Run an agent session under governance.
    #[command(after_help = EXIT_CODES_HELP)]
    Run(cmd::run::RunArgs),
    /// Run the agp daemon (gateway, policy, approvals, journal) in the foreground.
    #[command(after_help = EXIT_CODES_HELP)]
    Daemon(cmd::daemon::DaemonArgs),
    /// Serve the local web console: sessions, timelines, pending approvals, the journal and
    /// the policy; prints its address with a random access token.
    #[command(after_help = EXIT_CODES_HELP)]
    Console(cmd::console::ConsoleArgs),
    /// List sessions, or show one session's timeline.
    #[command(after_help = EXIT_CODES_HELP)]
    Sessions(cmd::sessions::SessionsArgs),
    /// Check that this agp home is healthy, with a fix for every problem.
    #[command(after_help = EXIT_CODES_HELP)]
    Doctor(cmd::doctor::DoctorArgs),
    /// Measure agp's speed targets on this machine.
    #[command(after_help = EXIT_CODES_HELP)]
    Bench(cmd::bench::BenchArgs),
    /// Check the Slack approval channel, or post a test approval and wait for a click.
    #[command(after_help = EXIT_CODES_HELP)]
    Slack(cmd::slack::SlackArgs),
    /// Build the container provider's image locally (`agp sandbox image build`).
    #[command(after_help = EXIT_CODES_HELP)]
    Sandbox(cmd::sandbox::SandboxArgs),
    /// Run a C2SP witness that cosigns journal checkpoints, or make its key.
    #[command(after_help = EXIT_CODES_HELP)]
    Witness(cmd::witness::WitnessArgs),
    /// Gate one tool call of a Claude Code or Codex session (run by the agent's harness as its
    /// PreToolUse / PostToolUse / PermissionRequest hook; reads the event on stdin).
    #[command(after_help = cmd::hook::HOOK_EXIT_HELP)]
    Hook(cmd::hook::HookArgs),
    /// Wire `agp hook` into Claude Code or Codex settings, for use with `agp daemon` without
    /// agp's sandbox (weaker than `agp run`: no sandbox, no egress control).
    #[command(after_help = EXIT_CODES_HELP)]
    InstallHooks(cmd::install_hooks::InstallHooksArgs),
    /// Forward 127.0.0.1:PORT inside the sandbox to agp's egress proxy socket, and run the agent.
    #[command(hide = true, after_help = EXIT_CODES_HELP)]
    EgressBridge(cmd::egress_bridge::EgressBridgeArgs),
}
