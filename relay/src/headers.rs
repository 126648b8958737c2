//! Which headers a proxy passes on (RFC 9110 §7.6.1).

use http::header::{self, HeaderMap, HeaderName};

/// Headers that describe one connection, not the message; never forwarded (except the
/// upgrade pair on an upgrade, which the backend must see to switch protocols).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Tokens of the `Connection` header, lowercased.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `Connection: Upgrade` and an `Upgrade` header: the client asks to switch protocols.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).iter().any(|t| t == "upgrade")
}

/// Remove hop-by-hop headers and those the `Connection` header names. With `upgrade`,
/// `Connection` and `Upgrade` stay as they are.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    for token in connection_tokens(headers) {
        if upgrade && token == "upgrade" {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        if upgrade && name == header::CONNECTION {
            continue;
        }
        headers.remove(name);
    }
    if !upgrade {
        headers.remove(header::UPGRADE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn plain_requests_lose_connection_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "text/plain"),
        ]);
        assert!(!is_upgrade(&h));
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn upgrades_keep_the_upgrade_pair_and_repeated_headers() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "v3.channel.k8s.io"),
            ("te", "trailers"),
        ]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("connection").unwrap(), "Upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "SPDY/3.1");
        assert_eq!(h.get_all("x-stream-protocol-version").iter().count(), 2);
        assert!(!h.contains_key("te"));
    }
}
