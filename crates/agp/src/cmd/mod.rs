//! One module per subcommand.

pub mod agent_binary;
pub mod agent_login;
pub mod agent_sandbox;
pub mod agent_wait;
pub mod bench;
pub mod console;
pub mod daemon;
pub mod doctor;
pub mod egress_bridge;
pub mod hook;
pub mod init;
pub mod install_hooks;
pub mod interrupt;
pub mod journal;
pub mod key;
pub mod keygen;
pub mod mode_report;
pub mod policy;
pub mod run;
pub mod run_agent;
pub mod run_report;
pub mod sandbox;
pub mod sandbox_attach;
pub mod sessions;
pub mod slack;
pub mod terminal_mode;
pub mod tool_shell;
pub mod verify;
pub mod verify_team;
pub mod witness;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::exit::Exit;
use crate::home::Home;

pub fn dispatch(cli: Cli) -> Result<Exit> {
    let by_flag = cli.home.is_some();
    let home_arg = cli.home.or_else(|| {
        std::env::var_os("AGP_HOME")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    });
    // These run inside the sandbox and need no agp home; `hook` must reach its own error
    // handling (deny, exit 2) whatever the environment.
    let command = match cli.command {
        Command::Hook(args) => return Ok(hook::run(&args, home_arg.as_deref())),
        Command::EgressBridge(args) => return egress_bridge::run(&args),
        Command::Sandbox(sandbox::SandboxArgs {
            command: sandbox::SandboxCommand::Attach(args),
        }) => return sandbox_attach::run(&args),
        Command::Sandbox(sandbox::SandboxArgs {
            command: sandbox::SandboxCommand::Reach { sockets },
        }) => return Ok(sandbox::reach(&sockets)),
        other => other,
    };
    let home = Home::resolve(home_arg.as_deref())?.named_by_flag(by_flag);
    match command {
        Command::Init(args) => init::run(&home, &args),
        Command::Keygen(args) => keygen::run(&home, args),
        Command::Key(args) => key::run(&home, &args),
        Command::Verify(args) => verify::run(&home, args),
        Command::Journal(args) => journal::run(&home, args),
        Command::Policy(args) => policy::run(&home, args),
        Command::Run(args) => run::run(&home, &args),
        Command::Daemon(args) => daemon::run(&home, &args),
        Command::Console(args) => console::run(&home, &args),
        Command::Sessions(args) => sessions::run(&home, args),
        Command::Doctor(args) => doctor::run(&home, &args),
        Command::Bench(args) => bench::run(&home, args),
        Command::Slack(args) => slack::run(&home, args),
        Command::Sandbox(args) => sandbox::run(&home, args),
        Command::InstallHooks(args) => install_hooks::run(&home, &args),
        Command::Witness(args) => witness::run(&home, args),
        Command::Hook(_) | Command::EgressBridge(_) => unreachable!("dispatched above"),
    }
}
