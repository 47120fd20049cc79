//! Health for supervisors: `scimd healthcheck` (a container health check in
//! images without curl) and the systemd readiness notification.

use std::time::Duration;

use crate::Config;
use crate::tls::TlsSource;

/// `/readyz` of the server `config` describes, as a client on this host
/// reaches it (an unspecified listen address is asked on loopback).
pub fn readyz_url(config: &Config) -> String {
    let scheme = if config.tls().unwrap_or_default() == TlsSource::Off {
        "http"
    } else {
        "https"
    };
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("{scheme}://{addr}/readyz")
}

/// Ok when `url` answers 200 within `timeout`. A certificate is not
/// checked on loopback (the server's own, possibly self-signed).
pub async fn check(url: &str, timeout: Duration) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost",
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .tls_danger_accept_invalid_certs(loopback)
        .build()
        .map_err(|e| e.to_string())?;
    let answer = client.get(parsed).send().await.map_err(|e| e.to_string())?;
    match answer.status() {
        reqwest::StatusCode::OK => Ok(()),
        other => Err(format!("{url} answered {other}")),
    }
}

/// Tells the service manager (systemd `Type=notify`) that the server is
/// serving, or stopping; nothing when `NOTIFY_SOCKET` is not set.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(socket) => socket,
        Err(e) => {
            tracing::warn!(error = %e, "service manager notification");
            return;
        }
    };
    let sent = match path.to_str() {
        // An abstract socket (`@name`).
        Some(name) if name.starts_with('@') => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..])
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        _ => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "service manager notification");
    }
}
