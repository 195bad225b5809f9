//! Which agent binary agp runs: its sha256, its version, the versions agp has tested, and the
//! pins (`[intendants.<name>] sha256 = [...]` in config.toml) that restrict it.

use std::fmt;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// A `major.minor.patch` version as the CLIs print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    /// The first `N.N.N` in `text` (`2.1.331 (Claude Code)`, `codex-cli 0.169.0`).
    pub fn find_in(text: &str) -> Option<Version> {
        text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .find_map(|word| {
                let mut parts = word.trim_matches('.').split('.');
                let v = Version(
                    parts.next()?.parse().ok()?,
                    parts.next()?.parse().ok()?,
                    parts.next()?.parse().ok()?,
                );
                Some(v)
            })
    }
}

/// The versions of one agent CLI agp supports and has tested.
#[derive(Debug, Clone, Copy)]
pub struct Support {
    /// Below this agp refuses to run the CLI, and says why.
    pub minimum: Version,
    pub why_minimum: &'static str,
    /// Every version the real-client tests run against (oldest first).
    pub tested: &'static [Version],
}

pub const CLAUDE_CODE: Support = Support {
    minimum: Version(2, 1, 197),
    why_minimum: "older releases are not known to fire PostToolUseFailure for a failed tool call \
                  nor to honour allowManagedHooksOnly, so agp could neither journal failed calls \
                  nor keep other hooks out",
    tested: &[Version(2, 1, 197), Version(2, 1, 331), Version(2, 1, 332)],
};

pub const CODEX: Support = Support {
    minimum: Version(0, 169, 0),
    why_minimum: "older releases are not known to run managed hooks from requirements.toml with \
                  allow_managed_hooks_only nor to list them in `app-server` hooks/list, which is \
                  how agp proves its hook will run",
    tested: &[Version(0, 169, 0), Version(0, 171, 0)],
};

/// Claude Code honours `"onFailure": "block"` on a hook entry from this version on.
pub const CLAUDE_ON_FAILURE_BLOCK: Version = Version(2, 1, 295);

/// What agp makes of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionVerdict {
    Tested,
    /// Runs, with a warning that is journaled.
    Untested(String),
    Refused(String),
}

impl Support {
    pub fn judge(&self, name: &str, version: Option<Version>) -> VersionVerdict {
        let Some(v) = version else {
            return VersionVerdict::Refused(format!(
                "cannot tell which version of {name} this is (its --version printed no version); \
                 agp supports {name} {} and later",
                self.minimum
            ));
        };
        if v < self.minimum {
            return VersionVerdict::Refused(format!(
                "{name} {v} is older than {}, the oldest agp supports: {}; upgrade it",
                self.minimum, self.why_minimum
            ));
        }
        if self.tested.contains(&v) {
            return VersionVerdict::Tested;
        }
        let list: Vec<String> = self.tested.iter().map(Version::to_string).collect();
        VersionVerdict::Untested(format!(
            "{name} {v} is not among the versions agp was tested with ({}); hook behaviour may differ",
            list.join(", ")
        ))
    }
}

/// The sha256 of a file, streamed (agent binaries are hundreds of MB).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks a binary's hash against the pins configured for `name` (none: anything goes).
pub fn check_pins(name: &str, pins: &[String], sha256: &str, path: &Path) -> Result<(), String> {
    if pins.is_empty() || pins.iter().any(|p| p.trim().eq_ignore_ascii_case(sha256)) {
        return Ok(());
    }
    Err(format!(
        "{} (sha256 {sha256}) is not one of the {name} binaries config.toml allows \
         ([intendants.{name}] sha256 lists {} other hash{}); if you upgraded on purpose, add \
         this hash there",
        path.display(),
        pins.len(),
        if pins.len() == 1 { "" } else { "es" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_what_the_clis_print() {
        assert_eq!(
            Version::find_in("2.1.331 (Claude Code)\n"),
            Some(Version(2, 1, 331))
        );
        assert_eq!(
            Version::find_in("codex-cli 0.169.0"),
            Some(Version(0, 169, 0))
        );
        assert_eq!(Version::find_in("no version here 1.2"), None);
        assert!(Version(2, 1, 197) < Version(2, 1, 295));
        assert!(Version(0, 99, 0) < Version(0, 169, 0));
    }

    #[test]
    fn versions_are_judged_against_the_tested_range() {
        assert_eq!(
            CLAUDE_CODE.judge("claude-code", Some(Version(2, 1, 331))),
            VersionVerdict::Tested
        );
        let VersionVerdict::Untested(w) =
            CLAUDE_CODE.judge("claude-code", Some(Version(2, 1, 400)))
        else {
            panic!()
        };
        assert!(w.contains("2.1.197, 2.1.331, 2.1.332"), "{w}");
        let VersionVerdict::Refused(why) = CODEX.judge("codex", Some(Version(0, 160, 3))) else {
            panic!()
        };
        assert!(
            why.contains("older than 0.169.0") && why.contains("hooks/list"),
            "{why}"
        );
        assert!(matches!(
            CODEX.judge("codex", None),
            VersionVerdict::Refused(_)
        ));
    }

    #[test]
    fn pins_refuse_other_binaries_naming_hash_and_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("claude");
        std::fs::write(&f, b"abc").unwrap();
        let sha = sha256_file(&f).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        check_pins("claude-code", &[], &sha, &f).unwrap();
        check_pins("claude-code", &[sha.to_uppercase()], &sha, &f).unwrap();
        let err = check_pins("claude-code", &["00".repeat(32)], &sha, &f).unwrap_err();
        assert!(
            err.contains(&sha) && err.contains(&f.display().to_string()),
            "{err}"
        );
        assert!(err.contains("[intendants.claude-code]"), "{err}");
    }
}
