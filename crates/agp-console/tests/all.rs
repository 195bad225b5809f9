//! The crate's one integration-test binary: every test lives in a module under `suite/`,
//! so the crate links one test executable instead of one per file.
// Test code panics on a broken fixture by design: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
