//! `--cursor FILE`: where an export stopped, so a restart neither loses nor repeats events.
//!
//! Saved after each batch was delivered (written and flushed, or accepted by the OTLP
//! endpoint), by writing a new file and renaming it over the old one: a crash leaves the old
//! cursor or the new one, never half of one. It names the journal and the leaf hash of the last
//! entry delivered, so a cursor is refused on another journal, or on this one rewritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The journal's origin.
    pub journal: String,
    /// The first seq not delivered yet.
    pub next_seq: u64,
    /// Hex leaf hash of entry `next_seq - 1` (none when `next_seq` is 0).
    pub last_leaf_hash: Option<String>,
}

pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The saved cursor; `None` when the file does not exist yet (a first run), provided it
    /// can be created there: found now rather than after the first batch went out.
    pub fn load(&self) -> Result<Option<Cursor>> {
        let dir = self.dir();
        anyhow::ensure!(
            dir.is_dir(),
            "cannot keep the cursor {}: the folder {} does not exist",
            self.path.display(),
            dir.display()
        );
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the cursor {}", self.path.display()))
            }
        };
        serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "the cursor {} is not an export cursor (delete it to export from the start)",
                self.path.display()
            )
        })
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    pub fn save(&self, cursor: &Cursor) -> Result<()> {
        let ctx = || format!("cannot save the cursor {}", self.path.display());
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir()).with_context(ctx)?;
        let mut text = serde_json::to_string(cursor)?;
        text.push('\n');
        tmp.write_all(text.as_bytes()).with_context(ctx)?;
        tmp.as_file().sync_all().with_context(ctx)?;
        tmp.persist(&self.path)
            .map_err(|e| e.error)
            .with_context(ctx)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cursor_loads_back_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = CursorFile::new(&dir.path().join("c.json"));
        assert_eq!(f.load().unwrap(), None);
        let mut c = Cursor {
            journal: "agp.local/journal/x".into(),
            next_seq: 3,
            last_leaf_hash: Some("ab".repeat(32)),
        };
        f.save(&c).unwrap();
        c.next_seq = 9;
        f.save(&c).unwrap();
        assert_eq!(f.load().unwrap(), Some(c));
        // Only the cursor is left: the temporary file was renamed over it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_cursor_in_a_missing_folder_is_refused_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let f = CursorFile::new(&dir.path().join("nope/c.json"));
        let e = f.load().unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_cursor_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, "next_seq=3").unwrap();
        let e = format!("{:#}", CursorFile::new(&p).load().unwrap_err());
        assert!(e.contains("delete it to export from the start"), "{e}");
    }
}
