//! agp's signed audit journal.
//!
//! One append-only log per agp home: `entries.jsonl` holds one RFC 8785 canonical JSON event
//! per line; the lines are the leaves of an RFC 6962 Merkle tree; `checkpoints` holds every
//! C2SP signed checkpoint (tree head) ever written, `checkpoint` the latest, and
//! `checkpoint.sig` an OpenSSH SSHSIG of the latest so `ssh-keygen -Y verify` can check it.
//! Those two are links into the generation `checkpoint.latest` points at
//! (`checkpoint.d/<n>/`), so one rename replaces both and a crash never tears the pair
//! ([`pair`]).
//!
//! * [`writer::JournalWriter`]: the single, thread-safe writer (implements
//!   [`agp_contracts::Journal`]), with per-entry or group-commit durability.
//! * [`verify`]: the streaming offline verifier (O(log n) memory).
//! * [`proof`]: C2SP tlog-proof inclusion receipts and consistency proofs.
//! * [`cosig`], [`witnessed`]: witness cosignatures (C2SP tlog-cosignature) and the
//!   `cosignatures` file that keeps them next to the checkpoints.
//! * [`published`]: checkpoints team members published, and the check that a member's journal
//!   still extends them.
//! * [`keys`], [`note`], [`sshsig`], [`checkpoint`], [`merkle`], [`pair`]: the building blocks.
//!
//! No async runtime and no agp daemon code: an auditor can depend on this crate alone.
//!
//! ```
//! use agp_contracts::Journal as _;
//! use agp_journal::{keys, Durability, JournalOptions, JournalWriter, SignerKey, VerifyOptions};
//!
//! # let home = tempfile::tempdir().unwrap();
//! # let key_file = home.path().join("journal.key");
//! # keys::write_signer_key_new(&key_file, &SignerKey::generate("agp.local/journal/demo").unwrap()).unwrap();
//! // The writer: one per journal folder (an exclusive lock enforces it), shared between threads.
//! let key = keys::load_signer_key(&key_file)?; // refuses a key file others can read
//! let journal = JournalWriter::open(
//!     &home.path().join("journal"),
//!     key.clone(),
//!     JournalOptions::with_durability(Durability::Group),
//! )?;
//! let receipt = journal.append("session.started", Some("s-1"), serde_json::json!({"repo": "/src"}))?;
//! assert_eq!(receipt.seq, 1); // seq 0 is the journal.created entry
//! journal.close()?; // final checkpoint, everything fsynced
//!
//! // The verifier, as an auditor runs it with a key obtained independently.
//! let report = agp_journal::verify_dir(
//!     &home.path().join("journal"),
//!     &VerifyOptions { trusted_key: key.verifier().clone(), trusted_checkpoint: None },
//! )?;
//! assert!(report.intact && report.findings.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod checkpoint;
pub mod cosig;
pub mod event;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod pair;
pub mod proof;
pub mod published;
pub mod sshsig;
pub mod verify;
pub mod witnessed;
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
/// Checkpoints cosigned by witnesses (see [`witnessed`]).
pub const COSIGNATURES_FILE: &str = "cosignatures";
