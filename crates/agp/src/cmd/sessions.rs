//! `agp sessions`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct SessionsArgs {}

pub fn run(_home: &Home, _args: SessionsArgs) -> Result<Exit> {
    bail!("`agp sessions` is not built yet")
}
