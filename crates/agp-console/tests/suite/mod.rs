mod handlers;
mod serving;
pub mod support;
