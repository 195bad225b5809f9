//! Helpers shared by the suite's test modules.

pub mod agents;
pub mod hook;
pub mod journal;
pub mod looping;
pub mod pty;
