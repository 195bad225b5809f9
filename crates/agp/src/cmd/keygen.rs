//! `agp keygen`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct KeygenArgs {}

pub fn run(_home: &Home, _args: KeygenArgs) -> Result<Exit> {
    bail!("`agp keygen` is not built yet")
}
