//! Relaying queries for names outside the cluster to the node's resolvers: the query
//! bytes go out unchanged (UDP for UDP queries, TCP for TCP ones), each upstream gets
//! [`UPSTREAM_TIMEOUT`], then the next is tried.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::metrics::{rcode_label, Metrics, UpstreamLabels, UpstreamRcodeLabels};

pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The upstream resolvers, in the order they are tried.
#[derive(Clone, Debug)]
pub struct Forwarder {
    pub upstreams: Vec<SocketAddr>,
    metrics: Option<Metrics>,
}

/// The addresses this server answers on itself, never used as upstreams (a query
/// relayed to itself would loop).
#[derive(Clone, Debug)]
pub struct OwnAddresses {
    pub bind: SocketAddr,
    pub service_ip: IpAddr,
    pub publish: Option<IpAddr>,
}

impl OwnAddresses {
    fn is_self(&self, up: &SocketAddr) -> bool {
        let ip = up.ip();
        if ip == self.service_ip {
            return true;
        }
        if up.port() != self.bind.port() {
            return false;
        }
        let bind = self.bind.ip();
        Some(ip) == self.publish
            || ip == bind
            || (ip.is_loopback() && (bind.is_unspecified() || bind.is_loopback()))
    }
}

/// `IP` (port 53) or `IP:PORT`; IPv6 with a port as `[IP]:PORT`.
pub fn parse_upstream(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| anyhow::anyhow!("upstream {s:?} is neither IP nor IP:PORT"))
}

/// The `nameserver` lines of a resolv.conf.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // A zone index (fe80::1%eth0) is not kept.
            let addr = words.next()?.split('%').next()?;
            addr.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

impl Forwarder {
    /// From `--upstream`, else the nameservers of `resolv_conf` (missing file: none),
    /// without the server's own addresses.
    pub fn from_options(
        upstream: &[String],
        resolv_conf: &Path,
        own: &OwnAddresses,
    ) -> anyhow::Result<Forwarder> {
        let candidates = if upstream.is_empty() {
            match std::fs::read_to_string(resolv_conf) {
                Ok(text) => resolv_conf_nameservers(&text),
                Err(e) => {
                    tracing::warn!(path = %resolv_conf.display(), error = %e, "no upstream resolvers");
                    Vec::new()
                }
            }
        } else {
            upstream
                .iter()
                .map(|s| parse_upstream(s))
                .collect::<anyhow::Result<_>>()?
        };
        let upstreams: Vec<SocketAddr> =
            candidates.into_iter().filter(|u| !own.is_self(u)).collect();
        Ok(Forwarder {
            upstreams,
            metrics: None,
        })
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Forwarder {
        self.metrics = Some(metrics);
        self
    }

    /// Whether there is any upstream to ask.
    pub fn has_upstreams(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// The first upstream reply to `query`, or `None` when none answered.
    pub async fn forward(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        for up in &self.upstreams {
            if let Some(m) = &self.metrics {
                m.forward_requests
                    .get_or_create(&UpstreamLabels { to: up.to_string() })
                    .inc();
            }
            let attempt = if tcp {
                tokio::time::timeout(UPSTREAM_TIMEOUT, relay_tcp(*up, query)).await
            } else {
                tokio::time::timeout(UPSTREAM_TIMEOUT, relay_udp(*up, query)).await
            };
            match attempt {
                Ok(Ok(reply)) => {
                    if let Some(m) = &self.metrics {
                        m.forward_responses
                            .get_or_create(&UpstreamRcodeLabels {
                                to: up.to_string(),
                                rcode: rcode_label(&reply),
                            })
                            .inc();
                    }
                    return Some(reply);
                }
                Ok(Err(e)) => tracing::debug!(upstream = %up, error = %e, "upstream failed"),
                Err(_) => tracing::debug!(upstream = %up, "upstream timed out"),
            }
        }
        None
    }
}

/// Whether `reply` answers `query` (same id; the rest is the upstream's business).
fn same_id(query: &[u8], reply: &[u8]) -> bool {
    reply.len() >= 12 && query.len() >= 2 && reply[..2] == query[..2] && reply[2] & 0x80 != 0
}

async fn relay_udp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        if same_id(query, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn relay_tcp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut conn = TcpStream::connect(up).await?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(query);
    conn.write_all(&out).await?;
    let n = conn.read_u16().await? as usize;
    let mut buf = vec![0u8; n];
    conn.read_exact(&mut buf).await?;
    if !same_id(query, &buf) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "reply with another id",
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> OwnAddresses {
        OwnAddresses {
            bind: "0.0.0.0:53".parse().unwrap(),
            service_ip: "10.96.0.10".parse().unwrap(),
            publish: Some("192.168.1.5".parse().unwrap()),
        }
    }

    #[test]
    fn resolv_conf_nameservers_are_read_and_self_excluded() {
        let dir = std::env::temp_dir().join(format!("keelson-dns-rc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rc = dir.join("resolv.conf");
        std::fs::write(
            &rc,
            "# comment\nsearch example.org\nnameserver 10.96.0.10\nnameserver 127.0.0.1\nnameserver 192.168.1.5\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\noptions ndots:5\n",
        )
        .unwrap();
        let f = Forwarder::from_options(&[], &rc, &own()).unwrap();
        assert_eq!(
            f.upstreams,
            vec![
                "192.168.1.1:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn upstream_flags_win_and_loopback_on_another_port_is_kept() {
        let f = Forwarder::from_options(
            &[
                "127.0.0.1:5353".into(),
                "8.8.8.8".into(),
                "127.0.0.53".into(),
            ],
            Path::new("/nonexistent"),
            &own(),
        )
        .unwrap();
        assert_eq!(
            f.upstreams,
            vec![
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "8.8.8.8:53".parse().unwrap()
            ]
        );
        assert!(Forwarder::from_options(&["not-an-ip".into()], Path::new("/x"), &own()).is_err());
    }

    #[test]
    fn missing_resolv_conf_means_no_upstream() {
        let f =
            Forwarder::from_options(&[], Path::new("/nonexistent/resolv.conf"), &own()).unwrap();
        assert!(f.upstreams.is_empty());
    }
}
