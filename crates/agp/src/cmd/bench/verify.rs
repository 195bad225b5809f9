//! `agp bench verify`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct VerifyBenchArgs {}

pub fn run(_args: VerifyBenchArgs) -> Result<Exit> {
    bail!("`agp bench verify` is not built yet")
}
