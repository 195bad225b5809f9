mod handlers;
mod indexed;
mod serving;
pub mod support;
