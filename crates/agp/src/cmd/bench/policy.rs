//! `agp bench policy`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct PolicyBenchArgs {}

pub fn run(_args: PolicyBenchArgs) -> Result<Exit> {
    bail!("`agp bench policy` is not built yet")
}
