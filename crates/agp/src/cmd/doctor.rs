//! `agp doctor`.

use anyhow::{bail, Result};
use clap::Args;

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct DoctorArgs {}

pub fn run(_home: &Home, _args: DoctorArgs) -> Result<Exit> {
    bail!("`agp doctor` is not built yet")
}
