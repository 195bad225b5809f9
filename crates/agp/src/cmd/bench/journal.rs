//! `agp bench journal`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct JournalBenchArgs {}

pub fn run(_args: JournalBenchArgs) -> Result<Exit> {
    bail!("`agp bench journal` is not built yet")
}
