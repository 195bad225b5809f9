//! Telling the user why an agent CLI stopped: its exit status and the last lines of its
//! stderr, never a bare "did not answer in time".

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::thread::JoinHandle;

/// Lines of stderr kept for a report.
pub const TAIL_LINES: usize = 12;
/// Longest line kept (a CLI may dump JSON on one line).
const MAX_LINE: usize = 400;

/// Reads `stream` to its end on a thread, keeping its last [`TAIL_LINES`] lines.
pub fn keep_tail(stream: impl Read + Send + 'static) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut tail: std::collections::VecDeque<String> = Default::default();
        for line in BufReader::new(stream).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            if line.is_empty() {
                continue;
            }
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(cut(&line));
        }
        tail.into()
    })
}

fn cut(line: &str) -> String {
    if line.len() <= MAX_LINE {
        return line.to_owned();
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// "exited with status 1" / "was killed by signal 9".
pub fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended".into(),
    }
}

/// The status and, when there is any, the tail of stderr, indented under it.
pub fn describe(status: Option<ExitStatus>, tail: &[String]) -> String {
    let mut out = match status {
        Some(s) => status_text(s),
        None => "is still running".into(),
    };
    if tail.is_empty() {
        out.push_str(" (nothing on stderr)");
    } else {
        out.push_str("; the end of its stderr:");
        for l in tail {
            out.push_str("\n    ");
            out.push_str(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn status_and_tail_of_a_real_process() {
        let mut child = Command::new("/bin/sh")
            .args([
                "-c",
                "for i in $(seq 1 30); do echo line $i >&2; done; exit 3",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let tail = keep_tail(child.stderr.take().unwrap());
        let status = child.wait().unwrap();
        let tail = tail.join().unwrap();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "line 30");
        let text = describe(Some(status), &tail);
        assert!(
            text.starts_with("exited with status 3; the end of its stderr:"),
            "{text}"
        );
        assert!(!text.contains("line 18\n"), "{text}");

        let mut child = Command::new("/bin/sh")
            .args(["-c", "kill -9 $$"])
            .spawn()
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            describe(Some(status), &[]),
            "was killed by signal 9 (nothing on stderr)"
        );
    }
}
