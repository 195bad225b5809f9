//! `agp init`: create the agp home.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing config.toml (keys and journal are never touched).
    #[arg(long)]
    pub force: bool,
    /// Print what was created as one JSON document
    #[arg(long)]
    pub json: bool,
}

const DEFAULT_CONFIG: &str = include_str!("../../assets/config.toml");
const DEFAULT_POLICY: &str = include_str!("../../assets/policy.toml");

pub fn run(home: &Home, args: &InitArgs) -> Result<Exit> {
    let config = home.config();
    if config.exists() && !args.force {
        bail!(
            "{} already exists (pass --force to overwrite it; keys and journal are kept)",
            config.display()
        );
    }
    Home::create_private_dir(home.root())?;
    Home::create_private_dir(&home.journal_dir())?;
    Home::create_private_dir(&home.keys_dir())?;
    write_file(&config, DEFAULT_CONFIG, args.force)?;
    // An existing policy is the user's own work: kept even with --force.
    let policy = home.policy();
    let policy_written = !policy.exists();
    if policy_written {
        write_file(&policy, DEFAULT_POLICY, false)?;
    }
    if args.json {
        let out = serde_json::json!({
            "home": home.root(),
            "config": config,
            "policy": policy,
            "policy_written": policy_written,
            "next": format!("{} keygen", home.agp()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(Exit::Ok);
    }
    println!("created agp home at {}", home.root().display());
    println!(
        "next: `{} keygen` to create the journal signing key",
        home.agp()
    );
    Ok(Exit::Ok)
}

/// Writes `contents` to `path` with mode 0600; without `overwrite` an existing file is an error.
pub fn write_file(path: &std::path::Path, contents: &str, overwrite: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
