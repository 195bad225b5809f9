mod handlers;
mod indexed;
mod pages;
mod serving;
pub mod support;
