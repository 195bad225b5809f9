//! `agp console`: the local web console (crate `agp-console`) for this home: sessions, one
//! session's timeline, pending approvals (decided through the daemon serving the home), the
//! journal and the policy. `agp daemon --console` serves the same console in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agp_console::daemon::DaemonApprovals;
use agp_console::index::IndexData;
use agp_console::{Console, ConsoleOptions, Settings, TlsFiles};
use anyhow::{Context, Result};
use clap::Args;

use crate::app::assemble::{init_logging, os_user, runtime};
use crate::exit::Exit;
use crate::home::Home;

/// Where the console listens and what it may do.
#[derive(Debug, Clone, Args)]
pub struct ConsoleArgs {
    /// Address to listen on; anything but a loopback address needs --tls-cert and --tls-key
    /// [default: 127.0.0.1:0, a free port]
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Show everything, decide nothing: no Allow / Deny, decisions refused
    #[arg(long)]
    pub view_only: bool,
    /// TLS certificate chain (PEM) to serve HTTPS with
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Another host name the console answers to (its certificate's name); TLS only, repeatable
    #[arg(long, value_name = "NAME")]
    pub allow_host: Vec<String>,
    /// Policy shown and explained [default: <home>/policy.toml]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

pub fn run(home: &Home, args: &ConsoleArgs) -> Result<Exit> {
    init_logging("agp_console=info");
    home.require_initialized()?;
    let rt = runtime()?;
    let policy = args.policy.clone().or_else(|| {
        let p = home.policy();
        p.is_file().then_some(p)
    });
    rt.block_on(async {
        let console = bind(home, args, policy).await?;
        announce(&console);
        console.serve(crate::cmd::daemon::shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    Ok(Exit::Ok)
}

/// The one line that says where the console is (with its access token).
pub fn announce(console: &Console) {
    use std::io::Write as _;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "agp console: {} (Ctrl-C to stop)", console.url());
    let _ = out.flush();
}

/// A console for `home`, bound and not yet serving: the index of the home's journal, the
/// daemon serving the home for approvals, and `policy` for the policy page.
pub async fn bind(home: &Home, args: &ConsoleArgs, policy: Option<PathBuf>) -> Result<Console> {
    let journal_dir = home.journal_dir();
    let verifier_key = match crate::cmd::keygen::home_verifier(home, false) {
        Ok(k) => Some(k),
        Err(e) => {
            eprintln!(
                "agp console: {}; Verify and proofs are off",
                crate::exit::one_line(&e)
            );
            None
        }
    };
    let index_path = home.root().join("console").join("index.db");
    let data = IndexData::open(&journal_dir, &index_path)
        .with_context(|| format!("cannot open the console index {}", index_path.display()))?;
    let approvals = DaemonApprovals::new(home.gateway_socket(), home.admin_token());
    let user_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let project_root = std::env::current_dir().context("cannot determine the current directory")?;
    let settings = Settings {
        view_only: args.view_only,
        journal_dir,
        verifier_key,
        policy_path: policy,
        eval_context: agp_contracts::EvalContext {
            project_root,
            home: user_home,
            agp_home: home.root().to_path_buf(),
        },
        operator: os_user(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let opts = ConsoleOptions {
        listen: args.listen,
        tls,
        allow_hosts: args.allow_host.clone(),
        settings,
    };
    Ok(Console::bind(opts, Arc::new(data), Some(Arc::new(approvals))).await?)
}
