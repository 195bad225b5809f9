//! `agp bench sandbox`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct SandboxBenchArgs {}

pub fn run(_args: SandboxBenchArgs) -> Result<Exit> {
    bail!("`agp bench sandbox` is not built yet")
}
