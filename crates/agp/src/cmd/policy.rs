//! `agp policy`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct PolicyArgs {}

pub fn run(_home: &Home, _args: PolicyArgs) -> Result<Exit> {
    bail!("`agp policy` is not built yet")
}
