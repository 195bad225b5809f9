//! The agp gateway: how a hook or an agent talks to the agp daemon.
//!
//! One Unix stream socket per daemon, newline-delimited JSON (one message per line), frames of at
//! most [`MAX_FRAME_BYTES`] counted in bytes. The first message on a connection must be
//! [`ClientMessage::Hello`] carrying the per-session token; after that the connection belongs to
//! that one session. This crate is std + serde only so that a short-lived hook process can use
//! [`client::Client`] without paying for an async runtime.

pub mod client;
pub mod frame;
pub mod protocol;

pub use client::{Client, ClientError, ExecReply, SessionOpened};
pub use frame::{FrameError, FrameReader, MAX_FRAME_BYTES};
pub use protocol::{
    ClientMessage, ErrorCode, ExecResult, ServerMessage, SessionMode, ToolCallRequest,
    ToolCallResult, VerdictMessage, PROTOCOL_VERSION,
};
