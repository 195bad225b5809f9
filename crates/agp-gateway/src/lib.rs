//! The agp gateway: how a hook or an agent talks to the agp daemon.
//!
//! One Unix stream socket per daemon, newline-delimited JSON (one message per line), frames of at
//! most [`MAX_FRAME_BYTES`] counted in bytes. The first message on a connection must be
//! [`ClientMessage::Hello`] carrying the per-session token; after that the connection belongs to
//! that one session. This crate is std + serde only so that a short-lived hook process can use
//! [`client::Client`] without paying for an async runtime.
//!
//! A session connection, one JSON object per line (client `>`, daemon `<`):
//!
//! ```text
//! > {"type":"hello","protocol":1,"token":"<64 hex>"}
//! < {"type":"welcome","protocol":1,"session":"s-…","mode":"gate"}
//! > {"type":"tool_call_request","id":"c1","tool_use_id":"toolu_1","tool":"Bash","input":{"command":"ls"},"cwd":"/repo"}
//! < {"type":"verdict","id":"c1","decision":"allow","reason":"…","rule_id":"read-only","input_sha256":"…"}
//! > {"type":"tool_call_result","id":"c1","ok":true,"output":"…","output_sha256":"…"}   (gate mode)
//! < {"type":"result_recorded","id":"c1"}
//! ```
//!
//! In proxy-exec mode an allowed verdict is followed by `{"type":"exec_result",…}` with the
//! sandboxed execution's redacted, truncated output and the hash of the full output. A `require`
//! is settled by an approver before the verdict is sent, so the client waits as long as the
//! approval timeout plus a margin. Any protocol violation (oversize, malformed or unknown frame,
//! wrong token, replayed id, a call before hello) gets `{"type":"error","code":…,"message":…}`
//! and the connection is closed; the client must treat every error as a deny. A client that
//! closes its side (even half-closes it) while waiting has left: the daemon settles the call as
//! denied and runs nothing for it.
//!
//! The token binds a connection to its session; it does not prove the sender is the harness's
//! hook (the agent's own tools can read it). For sessions `agp run` started, the daemon also
//! checks the connecting process (SO_PEERCRED) and its ancestors and refuses one the agent's
//! tools started with `peer_refused` (see `agp_daemon::peer`).
//!
//! Sessions are created by the daemon's owner (in-process, or through `open_session` with the
//! admin token kept in a 0600 file next to the socket).

pub mod approvals;
pub mod client;
pub mod frame;
pub mod protocol;

pub use approvals::{ApprovalList, DecisionApplied, PendingApproval, WebDecision};
pub use client::{Client, ClientError, ExecReply, SessionOpened, StopReply};
pub use frame::{take_chunk, ChunkStep, FrameError, FrameReader, MAX_FRAME_BYTES};
pub use protocol::{
    ClientMessage, ErrorCode, ExecResult, ServerMessage, SessionMode, ToolCallRequest,
    ToolCallResult, VerdictMessage, PROTOCOL_VERSION,
};
