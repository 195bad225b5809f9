//! The Docker Engine API over its Unix socket: HTTP/1.1, one connection per request.
//!
//! Plain blocking HTTP rather than an async client crate: the provider contract is blocking,
//! the handful of endpoints agp needs are JSON in and out, and an async client (bollard) would
//! bring a tokio runtime and hyper into a crate the hook links. Responses are parsed with
//! `httparse`; `exec` start is hijacked (`Upgrade: tcp`) so stdin can be fed and closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agp_contracts::sandbox::SandboxError;

/// The API version spoken: Docker Engine 20.10's, also served by Podman's compatibility API.
pub(crate) const API_VERSION: &str = "v1.41";

/// How long a plain API call may take (image import and container start included).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest response body read from a plain API call.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// An engine reached at a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    socket: PathBuf,
}

/// A response: status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(&self) -> Result<serde_json::Value, SandboxError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            SandboxError::Refused(format!(
                "container engine sent a reply that is not JSON: {e}"
            ))
        })
    }

    /// The string `field` of the JSON body (an id the engine gave); refused, naming
    /// `missing`, when it is not there.
    pub(crate) fn string_field(&self, field: &str, missing: &str) -> Result<String, SandboxError> {
        self.json()?
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| SandboxError::Refused(format!("container engine gave no {missing}")))
    }

    /// The engine's error message (`{"message": ...}`), or the raw body.
    pub(crate) fn message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }

    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A refusal naming what failed (`what`) and the engine's message, unless the engine
    /// said yes: every call whose failure must stop the session goes through here.
    pub(crate) fn refuse_unless_ok(
        &self,
        what: impl FnOnce() -> String,
    ) -> Result<(), SandboxError> {
        if self.ok() {
            Ok(())
        } else {
            Err(SandboxError::Refused(format!(
                "{}: {}",
                what(),
                self.message()
            )))
        }
    }
}

impl Engine {
    /// The engine at `socket` (a path, or `unix://PATH`).
    pub fn at(socket: impl AsRef<Path>) -> Result<Self, SandboxError> {
        let raw = socket.as_ref().to_string_lossy();
        let path = raw.strip_prefix("unix://").unwrap_or(&raw);
        if !path.starts_with('/') {
            return Err(SandboxError::Missing(format!(
                "container engine socket `{raw}` is not an absolute Unix socket path; set \
                 [sandbox.docker] socket or DOCKER_HOST to unix:///path/to/docker.sock"
            )));
        }
        Ok(Self {
            socket: PathBuf::from(path),
        })
    }

    /// `DOCKER_HOST` when set (only `unix://` is accepted: agp does not speak TCP to an
    /// engine), else Docker's default socket.
    pub fn from_env() -> Result<Self, SandboxError> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => {
                if !host.starts_with("unix://") {
                    return Err(SandboxError::Missing(format!(
                        "DOCKER_HOST={host} is not a unix:// socket; agp speaks to the engine \
                         only over a local Unix socket"
                    )));
                }
                Self::at(host)
            }
            _ => Self::at("/var/run/docker.sock"),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn connect(&self, timeout: Duration) -> Result<UnixStream, SandboxError> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| {
            SandboxError::Missing(format!(
                "container engine not reachable at {}: {e}; start it (e.g. `systemctl start \
                 docker`) or point [sandbox.docker] socket / DOCKER_HOST at its socket",
                self.socket.display()
            ))
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(stream)
    }

    /// One call with an optional JSON body.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, SandboxError> {
        let bytes = body.map(serde_json::Value::to_string).unwrap_or_default();
        let mut stream = self.connect(CALL_TIMEOUT)?;
        let mut head = request_head(method, path);
        if body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
        stream.write_all(head.as_bytes())?;
        stream.write_all(bytes.as_bytes())?;
        read_response(stream)
    }

    /// A call whose body is streamed from `body` (chunked): an image import.
    pub(crate) fn upload(
        &self,
        path: &str,
        content_type: &str,
        mut body: impl Read,
    ) -> Result<Response, SandboxError> {
        let mut stream = self.connect(CALL_TIMEOUT)?;
        let mut head = request_head("POST", path);
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        stream.write_all(head.as_bytes())?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            stream.write_all(format!("{n:x}\r\n").as_bytes())?;
            stream.write_all(&buf[..n])?;
            stream.write_all(b"\r\n")?;
        }
        stream.write_all(b"0\r\n\r\n")?;
        read_response(stream)
    }

    /// Start an exec and take over the connection: the returned stream carries stdin one way
    /// and the multiplexed stdout/stderr frames the other.
    pub(crate) fn hijack(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<UnixStream, SandboxError> {
        let bytes = body.to_string();
        let mut stream = self.connect(CALL_TIMEOUT)?;
        let mut head = request_head("POST", path);
        head.push_str(&format!(
            "Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
             Content-Length: {}\r\n\r\n",
            bytes.len()
        ));
        stream.write_all(head.as_bytes())?;
        stream.write_all(bytes.as_bytes())?;
        // Read the head byte by byte so no frame bytes are consumed with it.
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            if raw.len() > 64 * 1024 || stream.read(&mut byte)? == 0 {
                return Err(SandboxError::Refused(
                    "container engine closed the exec connection before answering".into(),
                ));
            }
            raw.push(byte[0]);
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        parse_head(&mut parsed, &raw)?;
        let status = parsed.code.unwrap_or(0);
        if status != 101 && status != 200 {
            let length = header(&parsed, "content-length").and_then(|v| v.parse().ok());
            let mut rest = Vec::new();
            let mut limited = stream.take(length.unwrap_or(64 * 1024));
            let _ = limited.read_to_end(&mut rest);
            let reply = Response { status, body: rest };
            return Err(SandboxError::Refused(format!(
                "container engine refused to start the command ({status}): {}",
                reply.message()
            )));
        }
        Ok(stream)
    }
}

fn request_head(method: &str, path: &str) -> String {
    format!("{method} /{API_VERSION}{path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n")
}

fn parse_head<'b>(
    parsed: &mut httparse::Response<'_, 'b>,
    raw: &'b [u8],
) -> Result<usize, SandboxError> {
    match parsed.parse(raw) {
        Ok(httparse::Status::Complete(n)) => Ok(n),
        Ok(httparse::Status::Partial) => Err(SandboxError::Refused(
            "container engine sent an incomplete reply".into(),
        )),
        Err(e) => Err(SandboxError::Refused(format!(
            "container engine sent a reply that is not HTTP: {e}"
        ))),
    }
}

fn header<'a>(parsed: &httparse::Response<'_, 'a>, name: &str) -> Option<&'a str> {
    parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

/// Read a whole response (`Connection: close`): head, then a body by length, chunks, or EOF.
fn read_response(stream: UnixStream) -> Result<Response, SandboxError> {
    let mut raw = Vec::new();
    stream.take(MAX_BODY as u64 + 1).read_to_end(&mut raw)?;
    if raw.len() > MAX_BODY {
        return Err(SandboxError::Refused(
            "container engine reply is too large".into(),
        ));
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let at = parse_head(&mut parsed, &raw)?;
    let status = parsed.code.unwrap_or(0);
    let rest = &raw[at..];
    let chunked =
        header(&parsed, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = header(&parsed, "content-length").and_then(|v| v.parse().ok()) {
        rest.get(..length)
            .ok_or_else(|| SandboxError::Refused("container engine reply was cut short".into()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, SandboxError> {
    let short = || SandboxError::Refused("container engine sent a malformed chunked reply".into());
    let mut out = Vec::new();
    let mut reader = BufReader::new(&mut data);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).map_err(|_| short())?;
        if size == 0 {
            return Ok(out);
        }
        let start = out.len();
        out.resize(start + size, 0);
        reader.read_exact(&mut out[start..]).map_err(|_| short())?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).map_err(|_| short())?;
    }
}

/// Percent-encode a query value.
pub(crate) fn query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_a_body() {
        let body = dechunk(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"abcde");
        assert!(dechunk(b"zz\r\nabc").is_err());
        assert!(dechunk(b"5\r\nab").is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query("a b/c{\"x\"}"), "a%20b%2Fc%7B%22x%22%7D");
    }

    #[test]
    fn only_unix_sockets() {
        assert!(Engine::at("tcp://1.2.3.4:2375").is_err());
        assert_eq!(
            Engine::at("unix:///run/d.sock").unwrap().socket(),
            Path::new("/run/d.sock")
        );
    }
}
