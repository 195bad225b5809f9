//! The embedded default demo: `examples/demo.yaml` and the small repository it works on,
//! compiled into the binary so `agp run` with no arguments shows the whole product on a fresh
//! machine without a checkout of the examples.

use std::path::{Path, PathBuf};

use crate::script::{Script, ScriptError};

/// Name the embedded script is reported under in errors and the journal.
pub const DEMO_SCRIPT_NAME: &str = "embedded:examples/demo.yaml";

const DEMO_SCRIPT: &str = include_str!("../../../examples/demo.yaml");

/// (path relative to the repo root, contents) of every file in `examples/demo-repo`.
const DEMO_REPO: &[(&str, &str)] = &[
    (
        "Makefile",
        include_str!("../../../examples/demo-repo/Makefile"),
    ),
    (
        "README.md",
        include_str!("../../../examples/demo-repo/README.md"),
    ),
    (
        "notes.txt",
        include_str!("../../../examples/demo-repo/notes.txt"),
    ),
    (
        "src/wordcount/__init__.py",
        include_str!("../../../examples/demo-repo/src/wordcount/__init__.py"),
    ),
    (
        "src/wordcount/core.py",
        include_str!("../../../examples/demo-repo/src/wordcount/core.py"),
    ),
    (
        "tests/test_core.py",
        include_str!("../../../examples/demo-repo/tests/test_core.py"),
    ),
];

/// The embedded demo script, validated like any other script.
pub fn script() -> Result<Script, ScriptError> {
    Script::parse(Path::new(DEMO_SCRIPT_NAME), DEMO_SCRIPT)
}

/// Writes a fresh copy of the demo repository into `dir` (which must be empty or absent) and
/// returns its path. A copy, because the demo edits and deletes files in it.
pub fn materialize_repo(dir: &Path) -> std::io::Result<PathBuf> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} is not empty", dir.display()),
        ));
    }
    for (relative, contents) in DEMO_REPO {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_script_is_valid() {
        let script = script().expect("embedded demo script parses");
        assert!(script.calls.len() >= 10);
    }

    #[test]
    fn embedded_repo_matches_the_examples_folder() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-repo");
        let mut on_disk = Vec::new();
        let mut stack = vec![examples.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(&examples).unwrap();
                    on_disk.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = DEMO_REPO.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "a file was added to or removed from examples/demo-repo: update DEMO_REPO"
        );
        for (relative, contents) in DEMO_REPO {
            assert_eq!(
                std::fs::read_to_string(examples.join(relative)).unwrap(),
                *contents
            );
        }
    }

    #[test]
    fn materialize_refuses_a_non_empty_dir_and_writes_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = materialize_repo(&tmp.path().join("demo")).unwrap();
        assert!(repo.join("src/wordcount/core.py").is_file());
        let err = materialize_repo(&repo).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    }
}
