//! `agp verify`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct VerifyArgs {}

pub fn run(_home: &Home, _args: VerifyArgs) -> Result<Exit> {
    bail!("`agp verify` is not built yet")
}
