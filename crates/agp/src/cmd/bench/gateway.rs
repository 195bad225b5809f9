//! `agp bench gateway`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct GatewayBenchArgs {}

pub fn run(_args: GatewayBenchArgs) -> Result<Exit> {
    bail!("`agp bench gateway` is not built yet")
}
