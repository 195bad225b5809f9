//! OpenTelemetry logs over OTLP/HTTP with the JSON encoding: `POST {endpoint}/v1/logs` with an
//! `ExportLogsServiceRequest` (resourceLogs → scopeLogs → logRecords; 64-bit integers as decimal
//! strings, attributes as KeyValue lists), as the OTLP specification's JSON mapping says.
//!
//! Retries follow the specification: 429, 502, 503 and 504 (and a connection that cannot be
//! made) are retried with exponential backoff, honouring `Retry-After`; any other answer is a
//! refusal and ends the export (exit 2) with nothing after the batch's first seq counted as
//! sent, so a `--cursor` restart sends it again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::ocsf::severity;
use super::record::Entry;

/// Most records per request (and per cursor save when printing).
pub const BATCH: usize = 256;
/// Bytes of records per request: under the 4 MiB that collectors commonly accept (a single
/// larger record still goes, alone).
const MAX_REQUEST_BYTES: usize = 3 << 20;
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(30);

/// A batch not sent because a stop signal came while waiting to retry it.
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped while retrying")
    }
}

impl std::error::Error for Stopped {}

pub struct Otlp {
    agent: ureq::Agent,
    url: String,
    origin: String,
    /// From `OTEL_EXPORTER_OTLP_LOGS_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS` (an API key for
    /// the collector, say): read from the environment, not the command line, where `ps` shows it.
    headers: Vec<(String, String)>,
}

impl Otlp {
    pub fn new(endpoint: &str, origin: &str) -> Result<Self> {
        let url = logs_url(endpoint)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("agp/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let headers = match std::env::var("OTEL_EXPORTER_OTLP_LOGS_HEADERS")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        {
            Ok(text) => parse_headers(&text)?,
            Err(_) => Vec::new(),
        };
        Ok(Self {
            agent,
            url,
            origin: origin.to_string(),
            headers,
        })
    }

    /// The ExportLogsServiceRequest for `records` of `entries` (same order, same length).
    pub fn request(&self, entries: &[&Entry], records: &[Value]) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_string();
        let logs: Vec<Value> = entries
            .iter()
            .zip(records)
            .map(|(e, r)| log_record(e, r, &now))
            .collect();
        json!({"resourceLogs": [{
            "resource": {"attributes": [
                kv("service.name", "agp"),
                kv("service.version", env!("CARGO_PKG_VERSION")),
                kv("agp.journal.origin", &self.origin),
            ]},
            "scopeLogs": [{
                "scope": {"name": "agp.journal.export", "version": env!("CARGO_PKG_VERSION")},
                "logRecords": logs,
            }],
        }]})
    }

    /// Posts one request, retrying what the specification says is retryable.
    pub fn post(&self, request: &Value, first_seq: u64, stop: &AtomicBool) -> Result<()> {
        let body = request.to_string();
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let mut req = self
                .agent
                .post(&self.url)
                .header("Content-Type", "application/json");
            for (k, v) in &self.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let wait = match req.send(body.as_str()) {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                    let text = resp
                        .body_mut()
                        .with_config()
                        .limit(64 * 1024)
                        .read_to_string()
                        .unwrap_or_default();
                    if (200..300).contains(&status) {
                        warn_partial(&text);
                        return Ok(());
                    }
                    if !matches!(status, 429 | 502 | 503 | 504) {
                        bail!(
                            "the OTLP endpoint {} refused the logs: HTTP {status}{}; nothing from \
                             seq {first_seq} on was sent (a restart with the same --cursor sends it)",
                            self.url,
                            excerpt(&text)
                        );
                    }
                    if attempt == ATTEMPTS {
                        bail!(
                            "the OTLP endpoint {} is still answering HTTP {status} after {ATTEMPTS} \
                             attempts; nothing from seq {first_seq} on was sent (a restart with the \
                             same --cursor sends it)",
                            self.url
                        );
                    }
                    retry_after.unwrap_or(backoff)
                }
                Err(e) => {
                    if attempt == ATTEMPTS {
                        bail!(
                            "cannot reach the OTLP endpoint {}: {e} ({ATTEMPTS} attempts); nothing \
                             from seq {first_seq} on was sent (a restart with the same --cursor \
                             sends it)",
                            self.url
                        );
                    }
                    backoff
                }
            };
            sleep_unless_stopped(wait, stop)?;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        Ok(())
    }
}

/// `URL/v1/logs` (or URL itself when it already ends so); refused unless http(s).
pub fn logs_url(endpoint: &str) -> Result<String> {
    let base = endpoint.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!(
            "--otlp-endpoint {endpoint:?} is not an http:// or https:// URL (e.g. \
             http://127.0.0.1:4318)"
        );
    }
    Ok(if base.ends_with("/v1/logs") {
        base.to_string()
    } else {
        format!("{base}/v1/logs")
    })
}

/// `key1=value1,key2=value2` with percent-encoded values, as the OpenTelemetry SDK
/// configuration defines `OTEL_EXPORTER_OTLP_HEADERS`.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("OTEL_EXPORTER_OTLP_HEADERS: {pair:?} is not key=value");
        };
        let value = percent_decode(v.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "OTEL_EXPORTER_OTLP_HEADERS: the value of {:?} is not percent-encoded UTF-8",
                k.trim()
            )
        })?;
        out.push((k.trim().to_string(), value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits records (with their serialized sizes) into requests of at most [`BATCH`] records
/// and [`MAX_REQUEST_BYTES`] bytes, in order.
pub fn split(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &n) in sizes.iter().enumerate() {
        if i > start && (i - start == BATCH || bytes + n > MAX_REQUEST_BYTES) {
            parts.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < sizes.len() {
        parts.push(start..sizes.len());
    }
    parts
}

/// Sleeps `wait`, waking early (with [`Stopped`]) when a stop signal arrives.
pub fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool) -> Result<()> {
    let until = Instant::now() + wait;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(Stopped.into());
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn log_record(e: &Entry, record: &Value, observed: &str) -> Value {
    let sev = severity::name(super::ocsf::severity_of(&e.kind, &e.event["body"]));
    let (number, text) = otel_severity(super::ocsf::severity_of(&e.kind, &e.event["body"]));
    let mut attributes = vec![
        kv("agp.kind", &e.kind),
        kv_int("agp.seq", e.seq),
        kv("agp.evidence.leaf_hash", &e.leaf_hash),
        kv_int("agp.evidence.checkpoint.size", e.checkpoint.size),
        kv("agp.evidence.checkpoint.root", &e.checkpoint.root_base64()),
        kv("agp.severity", sev),
    ];
    if let Some(s) = &e.session {
        attributes.push(kv("agp.session", s));
    }
    if let Some(id) = e.event["body"]["call_id"].as_str() {
        attributes.push(kv("agp.call_id", id));
    }
    if let Some(class) = record["class_uid"].as_u64() {
        attributes.push(kv_int("ocsf.class_uid", class));
        attributes.push(kv_int(
            "ocsf.type_uid",
            record["type_uid"].as_u64().unwrap_or(0),
        ));
    }
    json!({
        "timeUnixNano": e.time_nanos.max(0).to_string(),
        "observedTimeUnixNano": observed,
        "severityNumber": number,
        "severityText": text,
        "body": {"stringValue": record.to_string()},
        "attributes": attributes,
        "eventName": format!("agp.{}", e.kind),
    })
}

/// OCSF severity to OpenTelemetry's SeverityNumber (INFO 9, INFO2 10, WARN 13, ERROR 17).
fn otel_severity(ocsf: u8) -> (u8, &'static str) {
    match ocsf {
        severity::INFORMATIONAL => (9, "INFO"),
        severity::LOW => (10, "INFO2"),
        severity::MEDIUM => (13, "WARN"),
        severity::HIGH => (17, "ERROR"),
        5 | 6 => (21, "FATAL"),
        _ => (0, "UNSPECIFIED"),
    }
}

fn kv(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// OTLP/JSON writes 64-bit integers as decimal strings.
fn kv_int(key: &str, value: u64) -> Value {
    json!({"key": key, "value": {"intValue": value.to_string()}})
}

/// A 2xx may still report dropped records (`partialSuccess`): say so, the export goes on.
fn warn_partial(text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let rejected = &v["partialSuccess"]["rejectedLogRecords"];
    let n = rejected
        .as_u64()
        .or_else(|| rejected.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    if n > 0 {
        eprintln!(
            "agp: warning: the OTLP endpoint accepted the batch but rejected {n} record{}: {}",
            if n == 1 { "" } else { "s" },
            v["partialSuccess"]["errorMessage"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
}

fn excerpt(text: &str) -> String {
    let t = text.trim();
    if t.is_empty() {
        return String::new();
    }
    let short: String = t.chars().take(200).collect();
    format!(" ({short})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logs_path_is_added_once_and_only_http_is_taken() {
        for (given, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/logs"),
            ("https://collector/otlp/", "https://collector/otlp/v1/logs"),
            ("http://c:4318/v1/logs", "http://c:4318/v1/logs"),
        ] {
            assert_eq!(logs_url(given).unwrap(), url);
        }
        for bad in ["127.0.0.1:4318", "ftp://c", ""] {
            assert!(
                logs_url(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("not an http"),
                "{bad}"
            );
        }
    }

    #[test]
    fn headers_are_read_as_the_opentelemetry_variable_writes_them() {
        assert_eq!(
            parse_headers("api-key=abc%3D%3D, x-tenant = acme ,").unwrap(),
            vec![
                ("api-key".to_string(), "abc==".to_string()),
                ("x-tenant".to_string(), "acme".to_string())
            ]
        );
        assert!(parse_headers("").unwrap().is_empty());
        for bad in ["novalue", "k=%zz", "k=%4"] {
            assert!(parse_headers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_are_bounded_in_records_and_bytes_and_keep_the_order() {
        assert!(split(&[]).is_empty());
        assert_eq!(split(&[10; 600]), vec![0..256, 256..512, 512..600]);
        let mb = 1 << 20;
        assert_eq!(split(&[mb, mb, mb, mb, 1]), vec![0..3, 3..5]);
        // A record larger than a request goes alone.
        assert_eq!(split(&[10, 5 * mb, 10]), vec![0..1, 1..2, 2..3]);
    }
}
