//! `agp key`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct KeyArgs {}

pub fn run(_home: &Home, _args: KeyArgs) -> Result<Exit> {
    bail!("`agp key` is not built yet")
}
