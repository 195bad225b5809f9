//! The witness's HTTP/1 server: `POST /add-checkpoint` (submission) and
//! `GET /<sha256(origin) in hex>/checkpoint` (monitoring), both prefixes at the root.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};

use crate::{AddError, Witness};

/// A request is a checkpoint (a few hundred bytes) and at most 63 proof lines.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long headers and then the body may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A connection is closed after this long, however busy (clients should keep connections
/// alive, tlog-witness says, but none may hold a slot for ever).
const CONNECTION_LIMIT: Duration = Duration::from_secs(300);

/// Serves `witness` on `tcp` until the task is dropped.
pub async fn serve(tcp: tokio::net::TcpListener, witness: Arc<Witness>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match tcp.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "witness: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let witness = witness.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let witness = witness.clone();
                async move { Ok::<_, Infallible>(handle(witness, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(CONNECTION_LIMIT, conn).await {
                Ok(Err(e)) => tracing::debug!(error = %e, "witness: connection ended"),
                Err(_) => tracing::debug!("witness: connection closed after its time limit"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
}

fn text(status: u16, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

const PLAIN: &str = "text/plain; charset=utf-8";

async fn handle(witness: Arc<Witness>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path == "/add-checkpoint" {
        if req.method() != Method::POST {
            return text(405, PLAIN, "add-checkpoint takes a POST\n".into());
        }
        let read = tokio::time::timeout(
            READ_TIMEOUT,
            Limited::new(req.into_body(), MAX_BODY_BYTES).collect(),
        )
        .await;
        let body = match read {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => {
                return text(
                    413,
                    PLAIN,
                    format!("the body is larger than {MAX_BODY_BYTES} bytes or was cut off\n"),
                )
            }
            Err(_) => return text(408, PLAIN, "the body took too long to arrive\n".into()),
        };
        let w = witness.clone();
        let res = tokio::task::spawn_blocking(move || w.add_checkpoint(&body))
            .await
            .unwrap_or_else(|e| Err(AddError::Internal(format!("the request task failed: {e}"))));
        return match res {
            Ok(lines) => text(200, PLAIN, lines),
            Err(AddError::Conflict(size)) => text(409, "text/x.tlog.size", format!("{size}\n")),
            Err(e) => {
                tracing::info!(status = e.status(), error = %e, "witness: refused a checkpoint");
                text(e.status(), PLAIN, format!("{e}\n"))
            }
        };
    }
    if let Some(hash) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix("/checkpoint"))
    {
        if req.method() != Method::GET {
            return text(405, PLAIN, "checkpoints are read with GET\n".into());
        }
        let Some(origin) = witness
            .origins()
            .find(|o| hex::encode(Sha256::digest(o.as_bytes())) == hash)
            .map(str::to_string)
        else {
            return text(404, PLAIN, "unknown log\n".into());
        };
        let w = witness.clone();
        let latest = tokio::task::spawn_blocking(move || w.latest(&origin)).await;
        return match latest {
            Ok(Ok(Some(note))) => text(200, PLAIN, String::from_utf8_lossy(&note).into_owned()),
            Ok(Ok(None)) => text(404, PLAIN, "nothing cosigned for this log yet\n".into()),
            Ok(Err(e)) => text(500, PLAIN, format!("{e}\n")),
            Err(e) => text(500, PLAIN, format!("{e}\n")),
        };
    }
    text(404, PLAIN, "not found\n".into())
}
