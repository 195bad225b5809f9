//! Exit codes shared by every subcommand (documented in `agp --help`).

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything checked is fine.
    Ok = 0,
    /// The thing checked is bad: tampered journal, failing policy test, doctor found a problem.
    Bad = 1,
    /// Could not run: usage error, missing file, unreadable key.
    CannotRun = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Text appended to every `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok
  1  the thing checked is bad (tampered journal, failed policy test, doctor found a problem)
  2  could not run (usage error, missing file, unreadable key)";

/// An error and its causes as one line, outermost first, joined by `: ` (what `{:#}` prints),
/// except that a cause is not repeated when the text before it already ends with it: an error
/// whose message prints its own source (`"cannot reach {path}: {source}"`) would otherwise show
/// that source twice.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.is_empty() {
            if line.ends_with(&text) {
                continue;
            }
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    /// An error that prints its source in its own message, as `thiserror`'s
    /// `#[error("...: {source}")]` does.
    #[derive(Debug)]
    struct Reach(std::io::Error);

    impl std::fmt::Display for Reach {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot reach the daemon: {}", self.0)
        }
    }

    impl std::error::Error for Reach {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_its_message_already_shows_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(Reach(io)).context("asking the agp daemon");
        assert_eq!(
            one_line(&err),
            "asking the agp daemon: cannot reach the daemon: no such file"
        );
        assert_eq!(
            format!("{err:#}"),
            "asking the agp daemon: cannot reach the daemon: no such file: no such file"
        );
    }

    #[test]
    fn other_chains_print_as_anyhow_prints_them() {
        let err = Err::<(), _>(std::io::Error::other("disk full"))
            .context("cannot write key")
            .context("keygen")
            .unwrap_err();
        assert_eq!(one_line(&err), format!("{err:#}"));
        assert_eq!(one_line(&err), "keygen: cannot write key: disk full");
        let plain = anyhow::anyhow!("just this");
        assert_eq!(one_line(&plain), "just this");
    }
}
