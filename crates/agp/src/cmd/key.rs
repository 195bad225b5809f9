//! `agp key show`: the journal's public key in every form an auditor may need.

use agp_journal::keys;
use anyhow::Result;
use clap::{Args, Subcommand};

use crate::exit::{Exit, EXIT_CODES_HELP};
use crate::home::Home;

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the public key: C2SP verifier key, PEM (SPKI) and OpenSSH allowed_signers line.
    #[command(after_help = EXIT_CODES_HELP)]
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(home: &Home, args: &KeyArgs) -> Result<Exit> {
    match args.command {
        KeyCommand::Show { json } => {
            let key = crate::cmd::keygen::home_verifier(home, false)?;
            if json {
                let out = crate::cmd::keygen::public_json(&key);
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                crate::cmd::keygen::print_public(&key);
                println!(
                    "check checkpoint.sig without agp: ssh-keygen -Y verify -f allowed_signers -I {} -n {} -s checkpoint.sig < checkpoint",
                    keys::ssh_identity(&key),
                    agp_journal::sshsig::CHECKPOINT_NAMESPACE
                );
            }
            Ok(Exit::Ok)
        }
    }
}
