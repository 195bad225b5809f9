//! C2SP transparency-log witnessing for agp journals.
//!
//! * [`Witness`]: a witness (c2sp.org/tlog-witness `add-checkpoint`): it knows a set of logs by
//!   origin and key, checks each submitted checkpoint's signature and its consistency proof
//!   from the checkpoint it cosigned last, never goes back, and returns a tlog-cosignature/v1
//!   cosignature. Its state is behind [`state::StateStore`] (a folder of files here).
//! * [`server`]: the witness's HTTP/1 server (`agp witness serve`).
//! * [`submit`]: the journal side: sends each checkpoint the journal writes to the configured
//!   witnesses in the background and keeps their cosignatures in the journal's
//!   `cosignatures` file ([`agp_journal::witnessed`]).

pub mod keyfile;
pub mod request;
pub mod server;
pub mod state;
pub mod submit;
pub mod tree;
mod witness;

pub use witness::Witness;

/// Why an add-checkpoint request was refused, with the HTTP status tlog-witness assigns.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// 400: the request is malformed, or its old size is larger than the checkpoint's.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: this witness does not know the log.
    #[error("unknown log {0:?}")]
    UnknownLog(String),
    /// 403: no valid signature by a key trusted for the log.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 409: the old size is not the size of the latest checkpoint cosigned (given here).
    #[error("conflict: the witness's latest cosigned size is {0}")]
    Conflict(u64),
    /// 422: the proof does not hold, or a checkpoint contradicts what was cosigned.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// 500: the witness could not read or write its state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<state::StateError> for AddError {
    fn from(e: state::StateError) -> Self {
        AddError::Internal(e.to_string())
    }
}

impl AddError {
    pub fn status(&self) -> u16 {
        match self {
            AddError::BadRequest(_) => 400,
            AddError::Forbidden(_) => 403,
            AddError::UnknownLog(_) => 404,
            AddError::Conflict(_) => 409,
            AddError::Unprocessable(_) => 422,
            AddError::Internal(_) => 500,
        }
    }
}

#[cfg(test)]
mod tests;
