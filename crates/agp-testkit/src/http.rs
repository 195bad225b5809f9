//! A minimal HTTP/1.1 server side: one request per connection, answered and closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Mutex;

use crate::{respond, Api, State};

const MAX_HEAD: usize = 1 << 20;
const MAX_BODY: usize = 64 << 20;

/// Headers of a request as received, in order.
pub(crate) type Headers = Vec<(String, String)>;

/// Serves one request on `stream` (plain TCP, or TLS over it); one request per connection, so
/// nothing buffered past the request matters.
pub(crate) fn serve_connection<S: Read + Write>(stream: S, api: Api, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream);
    let (status, content_type, body) = match read_request(&mut reader) {
        Err(why) => (400, "text/plain", why.into_bytes()),
        Ok((method, path, headers, body)) => {
            let route = path.split('?').next().unwrap_or_default();
            let expected = match api {
                Api::Anthropic => "/v1/messages",
                Api::OpenAiResponses => "/v1/responses",
            };
            if method != "POST" || route != expected {
                (
                    404,
                    "text/plain",
                    format!("no route {method} {route}\n").into_bytes(),
                )
            } else {
                match serde_json::from_slice(&body) {
                    Err(e) => (400, "text/plain", format!("bad JSON: {e}\n").into_bytes()),
                    Ok(json) => (
                        200,
                        "text/event-stream",
                        respond(api, state, &path, headers, json),
                    ),
                }
            }
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = reader.get_mut();
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(&body);
    let _ = writer.flush();
}

type Request = (String, String, Headers, Vec<u8>);

fn read_request<R: Read>(reader: &mut BufReader<R>) -> Result<Request, String> {
    let mut line = String::new();
    let mut head_bytes = 0usize;
    let mut headers = Headers::new();
    let mut read_line = |reader: &mut BufReader<R>, line: &mut String| {
        line.clear();
        let n = reader.read_line(line).map_err(|e| e.to_string())?;
        head_bytes += n;
        if n == 0 || head_bytes > MAX_HEAD {
            return Err("incomplete or oversize request head".to_string());
        }
        Ok(())
    };
    read_line(reader, &mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut content_length = None;
    let mut chunked = false;
    loop {
        read_line(reader, &mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            let value = value.trim();
            headers.push((name.to_owned(), value.to_owned()));
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.parse::<usize>().map_err(|e| e.to_string())?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("content-encoding")
                && !value.eq_ignore_ascii_case("identity")
            {
                return Err(format!("content-encoding {value} is not supported"));
            }
        }
    }
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let n = content_length.unwrap_or(0);
        if n > MAX_BODY {
            return Err("body too large".into());
        }
        let mut body = vec![0u8; n];
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        body
    };
    Ok((method, path, headers, body))
}

fn read_chunked<R: Read>(reader: &mut BufReader<R>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let size_text = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16).map_err(|e| e.to_string())?;
        if body.len() + size > MAX_BODY {
            return Err("body too large".into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| e.to_string())?;
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if size == 0 {
            return Ok(body);
        }
    }
}
