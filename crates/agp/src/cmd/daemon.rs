//! `agp daemon`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct DaemonArgs {}

pub fn run(_home: &Home, _args: DaemonArgs) -> Result<Exit> {
    bail!("`agp daemon` is not built yet")
}
