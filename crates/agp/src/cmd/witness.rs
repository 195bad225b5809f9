//! `agp witness`: run a C2SP tlog-witness for agp journals (or any C2SP log with Ed25519
//! checkpoints), and make its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agp_journal::cosig::WitnessSigner;
use agp_journal::note::VerifierKey;
use agp_witness::state::FileStore;
use agp_witness::{keyfile, Witness};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct WitnessArgs {
    #[command(subcommand)]
    pub command: WitnessCommand,
}

#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Serve the witness over HTTP: `POST /add-checkpoint` checks a checkpoint's signature and
    /// its consistency with the last one cosigned for that log, and returns a
    /// tlog-cosignature/v1 cosignature; `GET /<sha256(origin) hex>/checkpoint` shows the latest
    /// one cosigned. Put a TLS proxy in front of it to serve beyond this machine.
    Serve(ServeArgs),
    /// Create a witness key: writes the secret key file (mode 0600) and prints the verifier key
    /// (`<name>+<key id>+<base64>`) that journals list in [[journal.witness]] and auditors pass
    /// to `agp verify --witness`.
    Keygen(KeygenArgs),
    /// Print the verifier key of a witness key file.
    Key {
        /// The witness's secret key file
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:7380
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The witness's secret key file (`agp witness keygen`)
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// A log to witness: its origin and its C2SP verifier key (or a file holding it), e.g.
    /// `agp.local/journal/alice=agp.local/journal/alice+1234abcd+AX...`. Repeat for more logs.
    #[arg(long = "log", value_name = "ORIGIN=VERIFIER_KEY", required = true)]
    pub logs: Vec<String>,
    /// Where the latest cosigned checkpoint of each log is kept [default: <home>/witness]
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The witness's name, a schema-less URL that identifies it (e.g. witness.example.com/w1)
    #[arg(long)]
    pub name: String,
    /// Where to write the secret key (never overwritten)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(home: &Home, args: WitnessArgs) -> Result<Exit> {
    match args.command {
        WitnessCommand::Keygen(a) => {
            let key = WitnessSigner::generate(&a.name)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("cannot create the witness key")?;
            keyfile::write_new(&a.out, &key)?;
            eprintln!(
                "agp witness: wrote the secret key to {} (keep it private)",
                a.out.display()
            );
            println!("{}", key.verifier());
            Ok(Exit::Ok)
        }
        WitnessCommand::Key { key } => {
            println!("{}", keyfile::load(&key)?.verifier());
            Ok(Exit::Ok)
        }
        WitnessCommand::Serve(a) => serve(home, &a),
    }
}

/// Parses `ORIGIN=VERIFIER_KEY`: the key must be that log's (C2SP names a log's key by its
/// origin).
fn parse_log(arg: &str) -> Result<VerifierKey> {
    let Some((origin, key)) = arg.split_once('=') else {
        bail!("--log {arg}: expected ORIGIN=VERIFIER_KEY");
    };
    let key = agp_journal::keys::load_verifier_key(key)
        .with_context(|| format!("--log {origin}: the verifier key is not usable"))?;
    if key.name() != origin {
        bail!(
            "--log {origin}: the key is named {:?}, not the origin {origin:?} (a log's key carries its origin as name)",
            key.name()
        );
    }
    Ok(key)
}

fn serve(home: &Home, args: &ServeArgs) -> Result<Exit> {
    crate::app::assemble::init_logging("agp_witness=info");
    let signer = keyfile::load(&args.key)?;
    let logs = args
        .logs
        .iter()
        .map(|l| parse_log(l))
        .collect::<Result<Vec<_>>>()?;
    let state_dir = args
        .state
        .clone()
        .unwrap_or_else(|| home.root().join("witness"));
    let store = FileStore::open(&state_dir)?;
    let witness = Arc::new(Witness::new(signer, &logs, Box::new(store)));
    let rt = crate::app::assemble::runtime()?;
    rt.block_on(async {
        let tcp = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = tcp.local_addr().unwrap_or(args.listen);
        println!(
            "agp witness: listening on http://{addr} as {} for {} log{} (state in {}); Ctrl-C to stop",
            witness.signer().verifier(),
            logs.len(),
            if logs.len() == 1 { "" } else { "s" },
            state_dir.display()
        );
        tokio::select! {
            () = agp_witness::server::serve(tcp, witness.clone()) => {}
            () = crate::cmd::daemon::shutdown_signal() => {}
        }
        anyhow::Ok(())
    })?;
    println!("agp witness: stopped");
    Ok(Exit::Ok)
}
