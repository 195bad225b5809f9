//! URL checks shared by the channels that talk to a configured endpoint (Slack, webhook): plain
//! `http://` / `ws://` is accepted only to this machine.

/// Whether `url` has `scheme` and a loopback host (user info refused: `http://127.0.0.1@evil/`).
pub fn is_loopback_url(url: &str, scheme: &str) -> bool {
    let Some(rest) = url.strip_prefix(scheme) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_host_under_the_scheme() {
        assert!(is_loopback_url("http://127.0.0.1:8080/api/", "http://"));
        assert!(is_loopback_url("http://[::1]:1/api/", "http://"));
        assert!(is_loopback_url("http://localhost/api/", "http://"));
        assert!(is_loopback_url("ws://127.0.0.1:9/socket", "ws://"));
        assert!(!is_loopback_url("https://127.0.0.1/", "http://"));
        assert!(!is_loopback_url("http://slack.example.com/api/", "http://"));
        assert!(!is_loopback_url(
            "http://127.0.0.1@evil.example/api/",
            "http://"
        ));
        assert!(!is_loopback_url(
            "http://127.0.0.1.evil.example/",
            "http://"
        ));
    }
}
