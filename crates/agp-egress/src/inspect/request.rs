//! Judging one request read off an inspected connection: framing, target, Host against the
//! TLS server name, path, the host's rules and the judge; then the head to forward, with the
//! host's headers (credentials) injected.

use super::{refused, truncate, Allowed, Inspection, Refused, HOP_HEADERS};
use crate::allowlist::{normalize_host, split_host_port};
use crate::http1::{self, RequestHead};
use crate::rules::{normalize_path, Effect, RequestView, Verdict};

impl Inspection {
    /// Checks a request and decides it; an `Ok` carries the head to forward.
    pub(super) async fn judge(&self, req: &RequestHead) -> Result<Allowed, Refused> {
        let body = http1::request_body(&req.headers).map_err(|w| refused(400, "framing", w))?;
        if http1::values(&req.headers, "upgrade").next().is_some() {
            return Err(refused(
                501,
                "framing",
                "protocol upgrades (WebSocket) are not inspected yet",
            ));
        }
        let (path, query) = self.target(req)?;
        self.check_host_header(req)?;
        let path = normalize_path(&path).map_err(|w| refused(400, "path", w))?;

        let (effect, rule) = self.host.decide(&req.method, &path);
        let reason = match effect {
            Effect::Allow => "allowed by the rule".to_owned(),
            Effect::Deny => {
                return Err(refused(
                    403,
                    &rule,
                    format!("{} {path} is denied by {rule}", req.method),
                ))
            }
            Effect::Require => {
                let view = RequestView {
                    host: self.host.host.clone(),
                    port: self.host.port,
                    method: req.method.clone(),
                    path: path.clone(),
                    rule: rule.clone(),
                    peer_pid: self.peer_pid,
                };
                let asked = self.config.judge.judge(view);
                match tokio::time::timeout(self.config.judge_timeout, asked).await {
                    Ok(Verdict::Allow(why)) => format!("approved: {why}"),
                    Ok(Verdict::Deny(why)) => {
                        return Err(refused(403, &rule, format!("refused: {why}")))
                    }
                    Err(_) => {
                        let secs = self.config.judge_timeout.as_secs();
                        return Err(refused(403, &rule, format!("no approval within {secs} s")));
                    }
                }
            }
        };

        // Credentials are added only now, after the decision, replacing whatever the client
        // sent under the same names.
        let mut injected = Vec::with_capacity(self.host.inject.len());
        for inj in &self.host.inject {
            let value = inj.provider.value().map_err(|e| {
                refused(
                    502,
                    &rule,
                    format!("credential {} unavailable: {e}", inj.credential),
                )
            })?;
            let name_ok = !inj.header.is_empty()
                && inj
                    .header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !name_ok || HOP_HEADERS.contains(&inj.header.to_ascii_lowercase().as_str()) {
                return Err(refused(
                    502,
                    &rule,
                    format!("credential {} names an invalid header", inj.credential),
                ));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(refused(
                    502,
                    &rule,
                    format!("credential {} is not a valid header value", inj.credential),
                ));
            }
            injected.push((inj.header.as_str(), value, inj.credential.clone()));
        }
        let named_by_connection: Vec<String> = http1::values(&req.headers, "connection")
            .flat_map(|v| {
                v.split(|b| *b == b',')
                    .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut head = Vec::with_capacity(512);
        let target = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        head.extend_from_slice(
            format!(
                "{} {target} HTTP/1.1\r\nHost: {}\r\n",
                req.method,
                self.authority()
            )
            .as_bytes(),
        );
        for (name, value) in &req.headers {
            let lower = name.to_ascii_lowercase();
            if HOP_HEADERS.contains(&lower.as_str())
                || named_by_connection.contains(&lower)
                || injected
                    .iter()
                    .any(|(h, _, _)| h.eq_ignore_ascii_case(name))
            {
                continue;
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        for (h, v, _) in &injected {
            head.extend_from_slice(format!("{h}: {v}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let expect_continue = http1::values(&req.headers, "expect")
            .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
        Ok(Allowed {
            rule,
            reason,
            path,
            head,
            body,
            credentials: injected.into_iter().map(|(_, _, c)| c).collect(),
            expect_continue,
        })
    }

    /// The path and query of the request target: origin form, or absolute form naming this
    /// very host.
    fn target(&self, req: &RequestHead) -> Result<(String, Option<String>), Refused> {
        let t = req.target.as_str();
        let origin = if t.starts_with('/') {
            t.to_owned()
        } else if let Some(rest) = t
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("https://"))
            .map(|_| &t[8..])
        {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            self.check_authority(&rest[..end], "the request target")?;
            match &rest[end..] {
                "" => "/".to_owned(),
                p if p.starts_with('?') => format!("/{p}"),
                p => p.to_owned(),
            }
        } else {
            return Err(refused(
                400,
                "framing",
                format!("request target {:?} is not a path", truncate(t, 80)),
            ));
        };
        let origin = origin.split('#').next().unwrap_or("/");
        Ok(match origin.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (origin.to_owned(), None),
        })
    }

    fn check_host_header(&self, req: &RequestHead) -> Result<(), Refused> {
        let hosts: Vec<&[u8]> = http1::values(&req.headers, "host").collect();
        let [one] = hosts.as_slice() else {
            return Err(refused(
                400,
                "fronting",
                "a request needs exactly one Host header",
            ));
        };
        let value = std::str::from_utf8(one)
            .map_err(|_| refused(400, "fronting", "Host header is not text"))?;
        self.check_authority(value.trim(), "the Host header")
    }

    /// A Host header or absolute target must name the TLS server name (and port) the connection
    /// was opened for: anything else is domain fronting.
    fn check_authority(&self, authority: &str, what: &str) -> Result<(), Refused> {
        let fronting = || {
            refused(
                421,
                "fronting",
                format!(
                    "{what} {:?} does not match the TLS server name {} (domain fronting)",
                    truncate(authority, 80),
                    self.host.host
                ),
            )
        };
        let (h, p) = split_host_port(authority).map_err(|_| fronting())?;
        let h = normalize_host(h).map_err(|_| fronting())?;
        if h != self.host.host || p.is_some_and(|p| p != self.host.port) {
            return Err(fronting());
        }
        Ok(())
    }

    fn authority(&self) -> String {
        let h = if self.host.host.contains(':') {
            format!("[{}]", self.host.host)
        } else {
            self.host.host.clone()
        };
        if self.host.port == 443 {
            h
        } else {
            format!("{h}:{}", self.host.port)
        }
    }
}
