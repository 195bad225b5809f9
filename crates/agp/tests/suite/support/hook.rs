//! `agp hook` as a harness runs it: the event on stdin, nothing of the test's environment.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// `agp hook ARGS` with `stdin` and the environment cleared but for `env`.
pub fn hook(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agp"))
        .arg("hook")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The hook may stop reading early (oversize input): a broken pipe here is fine.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}
