//! The web console's test support: its policy (one rule that needs a human), `agp console`
//! started as its own process, and the address line it prints.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use super::looping::AGP;

/// Touching a file needs a human; everything else runs (guards off, to keep calls simple).
pub const CONSOLE_POLICY: &str = r#"
version = 1
default = "allow"

[guards]
destructive = false
"protected-paths" = false
secrets = false
"supply-chain" = false
"network-egress" = false
privilege = false

[[rule]]
id = "touch-needs-a-human"
effect = "require"
match = ["Bash(touch *)"]
reason = "touching files needs a human"
"#;

/// A process killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The console's address line: `agp console: http://HOST:PORT/?token=T (...)`. The rest of
/// the output is read (and dropped) in a thread: a closed pipe would end the process at its
/// next line.
pub fn console_url(out: ChildStdout) -> String {
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines
            .next()
            .expect("the console printed no address")
            .unwrap();
        if let Some(at) = line.find("agp console: http://") {
            let url = &line[at + "agp console: ".len()..];
            std::thread::spawn(move || lines.for_each(drop));
            return url.split_whitespace().next().unwrap().to_owned();
        }
    }
}

/// `agp console` for `home` with `extra` flags, and the URL (with its token) it printed.
pub fn start_console(home: &Path, extra: &[&str]) -> (Killed, String) {
    let mut child = Command::new(AGP)
        .arg("--home")
        .arg(home)
        .arg("console")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = console_url(child.stdout.take().unwrap());
    (Killed(child), url)
}
