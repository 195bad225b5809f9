//! HTTP/1.1 message framing for the inspecting proxy: request and response heads read with a
//! bound, bodies streamed (never buffered whole), and the framing rules that keep the proxy and
//! the upstream agreeing on where one request ends (no smuggling).

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proxy::MAX_HEAD_BYTES;

const MAX_HEADERS: usize = 100;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;

#[derive(Debug)]
pub(crate) enum HeadError {
    /// The peer closed cleanly before a new message.
    Eof,
    TooLarge,
    Io(io::Error),
}

/// Reads one message head (up to and including the blank line), consuming nothing past it.
pub(crate) async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, HeadError> {
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let avail = r.fill_buf().await.map_err(HeadError::Io)?;
        if avail.is_empty() {
            return Err(if head.is_empty() {
                HeadError::Eof
            } else {
                HeadError::Io(io::ErrorKind::UnexpectedEof.into())
            });
        }
        let old = head.len();
        let take = avail.len().min(MAX_HEAD_BYTES + 1 - old);
        head.extend_from_slice(&avail[..take]);
        let from = old.saturating_sub(3);
        if let Some(p) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + p + 4;
            head.truncate(end);
            r.consume(end - old);
            return Ok(head);
        }
        r.consume(take);
        if head.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

pub(crate) type Headers = Vec<(String, Vec<u8>)>;

pub(crate) struct RequestHead {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Headers,
}

pub(crate) fn parse_request(head: &[u8]) -> Result<RequestHead, String> {
    let mut buf = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut buf);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete request head".into()),
        Err(e) => return Err(format!("malformed request: {e}")),
    }
    Ok(RequestHead {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        minor: req.version.unwrap_or(1),
        headers: collect(req.headers),
    })
}

pub(crate) struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub minor: u8,
    pub headers: Headers,
}

pub(crate) fn parse_response(head: &[u8]) -> Result<ResponseHead, String> {
    let mut buf = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut buf);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete response head".into()),
        Err(e) => return Err(format!("malformed response from upstream: {e}")),
    }
    Ok(ResponseHead {
        status: resp.code.unwrap_or(0),
        reason: resp.reason.unwrap_or_default().to_owned(),
        minor: resp.version.unwrap_or(1),
        headers: collect(resp.headers),
    })
}

fn collect(headers: &[httparse::Header<'_>]) -> Headers {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

pub(crate) fn values<'a>(headers: &'a Headers, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Whether a comma-separated header (`Connection`) carries `token`.
pub(crate) fn has_token(headers: &Headers, name: &str, token: &str) -> bool {
    values(headers, name).any(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    Length(u64),
    Chunked,
    /// Responses only: the body runs until the upstream closes.
    UntilClose,
}

/// The framing of a request body. Ambiguous framing is refused, never guessed: both
/// `Content-Length` and `Transfer-Encoding` (the classic smuggling vector), several
/// `Content-Length` headers, a transfer coding other than exactly `chunked`, or a length that is
/// not plain digits.
pub(crate) fn request_body(headers: &Headers) -> Result<Body, String> {
    let te: Vec<&[u8]> = values(headers, "transfer-encoding").collect();
    let cl: Vec<&[u8]> = values(headers, "content-length").collect();
    if !te.is_empty() && !cl.is_empty() {
        return Err("both Content-Length and Transfer-Encoding (request smuggling)".into());
    }
    if !te.is_empty() {
        if te.len() != 1 || !te[0].trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err("Transfer-Encoding other than a single \"chunked\"".into());
        }
        return Ok(Body::Chunked);
    }
    match cl.as_slice() {
        [] => Ok(Body::None),
        [one] => parse_length(one).map(Body::Length),
        _ => Err("several Content-Length headers".into()),
    }
}

/// The framing of a response body (RFC 9112 §6.3).
pub(crate) fn response_body(
    status: u16,
    request_method: &str,
    headers: &Headers,
) -> Result<Body, String> {
    if request_method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Ok(Body::None);
    }
    let te: Vec<&[u8]> = values(headers, "transfer-encoding").collect();
    if let Some(last) = te.last() {
        let final_coding = last.rsplit(|b| *b == b',').next().unwrap_or_default();
        return Ok(
            if final_coding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Body::Chunked
            } else {
                Body::UntilClose
            },
        );
    }
    let cl: Vec<&[u8]> = values(headers, "content-length").collect();
    match cl.as_slice() {
        [] => Ok(Body::UntilClose),
        [first, rest @ ..] if rest.iter().all(|v| v == first) => {
            parse_length(first).map(Body::Length)
        }
        _ => Err("upstream sent conflicting Content-Length headers".into()),
    }
}

fn parse_length(v: &[u8]) -> Result<u64, String> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err("Content-Length is not a plain number".into());
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "Content-Length is not a plain number".into())
}

/// Streams a body of the given framing from `r` to `w`; returns the bytes written.
pub(crate) async fn copy_body<R, W>(r: &mut R, w: &mut W, body: Body) -> io::Result<u64>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let n = match body {
        Body::None => 0,
        Body::Length(n) => copy_exact(r, w, n).await?,
        Body::Chunked => copy_chunked(r, w).await?,
        Body::UntilClose => tokio::io::copy_buf(r, w).await?,
    };
    w.flush().await?;
    Ok(n)
}

async fn copy_exact<R, W>(r: &mut R, w: &mut W, n: u64) -> io::Result<u64>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let copied = tokio::io::copy_buf(&mut r.take(n), w).await?;
    if copied != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "body shorter than its Content-Length",
        ));
    }
    Ok(n)
}

/// Re-frames a chunked body chunk by chunk: sizes are parsed strictly and written back in a
/// canonical form (extensions and trailers dropped), so what the upstream sees is exactly what
/// the proxy judged as one message.
async fn copy_chunked<R, W>(r: &mut R, w: &mut W) -> io::Result<u64>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let mut total = 0u64;
    loop {
        let line = read_line(r).await?;
        let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
        if size_text.is_empty()
            || size_text.len() > 15
            || !size_text.iter().all(u8::is_ascii_hexdigit)
        {
            return Err(bad("malformed chunk size"));
        }
        let size = u64::from_str_radix(std::str::from_utf8(size_text).unwrap_or("x"), 16)
            .map_err(|_| bad("malformed chunk size"))?;
        let frame = format!("{size:x}\r\n");
        w.write_all(frame.as_bytes()).await?;
        total += frame.len() as u64;
        if size == 0 {
            // Trailers are read and dropped up to the blank line that ends the message.
            while !read_line(r).await?.is_empty() {}
            w.write_all(b"\r\n").await?;
            return Ok(total + 2);
        }
        total += copy_exact(r, w, size).await?;
        if !read_line(r).await?.is_empty() {
            return Err(bad("chunk data longer than its size"));
        }
        w.write_all(b"\r\n").await?;
        total += 2;
    }
}

/// One CRLF-terminated line, without its CRLF; a bare LF or an over-long line is an error.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_LINE as u64 + 2)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 || !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed or over-long line in a chunked body",
        ));
    }
    line.truncate(line.len() - 2);
    if line.contains(&b'\r') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bare CR in a line",
        ));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Headers {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn ambiguous_request_framing_is_refused() {
        assert_eq!(request_body(&headers(&[])).unwrap(), Body::None);
        assert_eq!(
            request_body(&headers(&[("Content-Length", "12")])).unwrap(),
            Body::Length(12)
        );
        assert_eq!(
            request_body(&headers(&[("transfer-encoding", " Chunked ")])).unwrap(),
            Body::Chunked
        );
        for bad in [
            &[("Content-Length", "3"), ("Transfer-Encoding", "chunked")][..],
            &[("Content-Length", "3"), ("Content-Length", "3")],
            &[("Content-Length", "+3")],
            &[("Content-Length", "0x3")],
            &[("Content-Length", "3, 3")],
            &[("Transfer-Encoding", "gzip, chunked")],
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
            &[("Transfer-Encoding", "xchunked")],
        ] {
            assert!(request_body(&headers(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn response_framing() {
        let cl = headers(&[("Content-Length", "5")]);
        assert_eq!(response_body(200, "HEAD", &cl).unwrap(), Body::None);
        assert_eq!(response_body(304, "GET", &cl).unwrap(), Body::None);
        assert_eq!(response_body(200, "GET", &cl).unwrap(), Body::Length(5));
        assert_eq!(
            response_body(200, "GET", &headers(&[])).unwrap(),
            Body::UntilClose
        );
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn chunked_bodies_are_reframed_and_bounded() {
        let rt = rt();
        let mut out = Vec::new();
        let mut input: &[u8] = b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let n = rt
            .block_on(copy_body(&mut input, &mut out, Body::Chunked))
            .unwrap();
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(n, out.len() as u64);
        assert_eq!(input, b"NEXT");

        for bad in [
            &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
            b"zz\r\n",
            b"5\nhello\r\n",
            b"-1\r\n",
            b"5\r\nhel",
        ] {
            let mut input = bad;
            let r = rt.block_on(copy_body(&mut input, &mut Vec::new(), Body::Chunked));
            assert!(r.is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn heads_are_bounded_and_do_not_consume_the_body() {
        let rt = rt();
        let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        let head = rt.block_on(read_head(&mut input)).unwrap();
        assert!(head.ends_with(b"\r\n\r\n"));
        assert_eq!(input, b"BODY");
        let big = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        let mut input = big.as_bytes();
        assert!(matches!(
            rt.block_on(read_head(&mut input)),
            Err(HeadError::TooLarge)
        ));
        let mut empty: &[u8] = b"";
        assert!(matches!(
            rt.block_on(read_head(&mut empty)),
            Err(HeadError::Eof)
        ));
    }
}
