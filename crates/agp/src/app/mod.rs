//! The composition root: where the agp home's files are (`home`), what its config.toml says,
//! read once (`config`), how the parts of a daemon are put together from them (`assemble`),
//! and the in-process daemon every launch path runs (`local`). Commands get their parts from
//! here instead of finding files and reading settings themselves.

pub mod assemble;
pub mod config;
pub mod home;
pub mod limits;
pub mod local;
pub mod policy_watch;
pub mod publish;
pub mod secrets;
pub mod state;
