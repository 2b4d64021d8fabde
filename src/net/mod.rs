//! Network plumbing shared by the sources, the shipper, the admin endpoint and the
//! simulator: TLS configuration, the HTTP client, and a small HTTP server loop.

pub mod http;
pub(crate) mod proxy;
pub mod read_cap;
pub(crate) mod server;
pub mod tls;

/// Raises the soft limit on open files to the hard limit (as Go's runtime does at start:
/// the default soft limit of 1,024 is far too low for a server, and a flood of webhook
/// connections must not starve the spool, the shipper and the WebSocket). Returns the
/// soft limit in force afterwards.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// The soft limit on open files now.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// An error with its chain of causes on one line ("connect failed: connection refused").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// A listener that could not be bound: which endpoint, the address, and the setting to
/// change.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}: {source} (is another process using it? set {var})")]
pub struct BindError {
    pub what: &'static str,
    pub var: &'static str,
    pub addr: std::net::SocketAddr,
    pub source: std::io::Error,
}

/// The URL with the value of `access_token` replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let (base, query) = url.split_at(q + 1);
    let parts: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _))
                if k.eq_ignore_ascii_case("access_token") || k.eq_ignore_ascii_case("token") =>
            {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    format!("{base}{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn access_tokens_are_redacted() {
        assert_eq!(
            super::redact_url("wss://ws.zoom.us/ws?subscriptionId=abc&access_token=eyJ.secret"),
            "wss://ws.zoom.us/ws?subscriptionId=abc&access_token=***"
        );
        assert_eq!(
            super::redact_url("wss://h/ws?access_token=x&b=1"),
            "wss://h/ws?access_token=***&b=1"
        );
        assert_eq!(super::redact_url("wss://h/ws"), "wss://h/ws");
    }
}
