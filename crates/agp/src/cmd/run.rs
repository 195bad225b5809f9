//! `agp run`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct RunArgs {}

pub fn run(_home: &Home, _args: RunArgs) -> Result<Exit> {
    bail!("`agp run` is not built yet")
}
