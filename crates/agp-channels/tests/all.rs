//! The crate's one integration-test binary: every test lives in a module under `suite/`,
//! so the crate links one test executable instead of one per file.

mod suite;
