//! `agp journal`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct JournalArgs {}

pub fn run(_home: &Home, _args: JournalArgs) -> Result<Exit> {
    bail!("`agp journal` is not built yet")
}
