//! Path members, written as JSON text even when the path is not UTF-8.
//!
//! serde refuses a non-UTF-8 path, which made [`super::Event::to_body`] fail on, say, a
//! repository directory with a Latin-1 name. JSON can hold only text, so such a path is
//! written with U+FFFD in place of each invalid byte sequence; a UTF-8 path (every path agp
//! has journaled so far) is written exactly as before.
//!
//! Use with `#[serde(serialize_with = "path_text::path")]`, or `path_text::opt_path` for an
//! `Option` member.

use serde::Serializer;
use std::path::PathBuf;

// `&PathBuf` rather than `&Path`: serde passes the field as it is declared.
#[allow(clippy::ptr_arg)]
pub fn path<S: Serializer>(path: &PathBuf, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

#[allow(clippy::ref_option)]
pub fn opt_path<S: Serializer>(path: &Option<PathBuf>, serializer: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => serializer.serialize_str(&p.to_string_lossy()),
        None => serializer.serialize_none(),
    }
}
