//! agp's signed audit journal.
//!
//! One append-only log per agp home: `entries.jsonl` holds one RFC 8785 canonical JSON event
//! per line; the lines are the leaves of an RFC 6962 Merkle tree; `checkpoints` holds every
//! C2SP signed checkpoint (tree head) ever written, `checkpoint` the latest, and
//! `checkpoint.sig` an OpenSSH SSHSIG of the latest so `ssh-keygen -Y verify` can check it.
//!
//! * [`writer::JournalWriter`]: the single, thread-safe writer (implements
//!   [`agp_contracts::Journal`]), with per-entry or group-commit durability.
//! * [`verify`]: the streaming offline verifier (O(log n) memory).
//! * [`proof`]: C2SP tlog-proof inclusion receipts and consistency proofs.
//! * [`keys`], [`note`], [`sshsig`], [`checkpoint`], [`merkle`]: the building blocks.
//!
//! No async runtime and no agp daemon code: an auditor can depend on this crate alone.

pub mod checkpoint;
pub mod event;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod sshsig;
pub mod verify;
pub mod writer;

pub use checkpoint::Checkpoint;
pub use note::{SignerKey, VerifierKey};
pub use verify::{verify_dir, Code, Finding, Report, Severity, VerifyError, VerifyOptions};
pub use writer::{Durability, JournalOptions, JournalWriter, OpenSummary};

/// File names inside a journal folder.
pub const ENTRIES_FILE: &str = "entries.jsonl";
pub const CHECKPOINT_FILE: &str = "checkpoint";
pub const CHECKPOINTS_FILE: &str = "checkpoints";
pub const SSHSIG_FILE: &str = "checkpoint.sig";
