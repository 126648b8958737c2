//! The DNS server loop: UDP datagrams and TCP streams (2-byte length framing), one
//! [`Handler`] for both. Cluster names are answered inline from the current
//! [`Snapshot`]; queries to forward run on tasks of their own so a slow upstream
//! never holds up the socket.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::answer::{error_reply, resolve, Resolution, Zone};
use crate::forward::Forwarder;
use crate::metrics::{type_label, Metrics, RcodeLabels, RequestLabels, TypeLabels};
use crate::wire::{encode, formerr_for, udp_limit};
use crate::zone::Snapshot;

/// The current snapshot, swapped whole by the index task.
pub type SnapshotCell = Arc<RwLock<Arc<Snapshot>>>;

/// A TCP connection idle for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// What a query needs after the local lookup.
pub enum Step {
    /// Send these bytes (or nothing).
    Done(Option<Vec<u8>>),
    /// Relay to the upstreams ([`Handler::forward`]).
    Forward(Box<Message>, Instant),
    /// A cluster answer ending in a CNAME to a name outside the cluster (an
    /// ExternalName Service): ask the upstreams for the target and append what they
    /// say ([`Handler::chase`]), as CoreDNS does, since stub resolvers do not.
    Chase(Box<Message>, Box<Message>, Instant),
}

pub struct Handler {
    pub zone: Zone,
    pub snapshot: SnapshotCell,
    pub forwarder: Forwarder,
    pub metrics: Metrics,
}

impl Handler {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Answer `bytes` from the cluster's names, or say it must be forwarded.
    pub fn local(&self, bytes: &[u8], proto: Proto) -> Step {
        let start = Instant::now();
        let request = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) => {
                let reply = formerr_for(bytes);
                self.count(proto, None, start, reply.as_deref());
                return Step::Done(reply);
            }
        };
        match resolve(&self.zone, &self.snapshot(), &request) {
            Resolution::Reply(reply) => {
                if self.forwarder.has_upstreams()
                    && external_target(&self.zone, &request, &reply).is_some()
                {
                    return Step::Chase(Box::new(request), Box::new(reply), start);
                }
                Step::Done(Some(self.finish(&request, reply, proto, start)))
            }
            Resolution::Forward => Step::Forward(Box::new(request), start),
        }
    }

    /// Relay `bytes` (the query `request` was parsed from); SERVFAIL when no upstream
    /// answers or there is none.
    pub async fn forward(
        &self,
        bytes: &[u8],
        request: &Message,
        proto: Proto,
        start: Instant,
    ) -> Vec<u8> {
        match self.forwarder.forward(bytes, proto == Proto::Tcp).await {
            Some(reply) => {
                self.count(proto, qtype(request), start, Some(&reply));
                reply
            }
            None => self.finish(
                request,
                error_reply(request, ResponseCode::ServFail),
                proto,
                start,
            ),
        }
    }

    /// Completes `reply` (which ends in a CNAME out of the cluster) with the upstreams'
    /// answer for the CNAME's target; the reply as it is when they do not answer.
    pub async fn chase(
        &self,
        request: &Message,
        mut reply: Message,
        proto: Proto,
        start: Instant,
    ) -> Vec<u8> {
        if let Some((target, qtype)) = external_target(&self.zone, request, &reply) {
            let mut query = Message::query();
            query.metadata.id = request.metadata.id;
            query.metadata.recursion_desired = true;
            query.add_query(hickory_proto::op::Query::query(target, qtype));
            let answer = match query.to_vec() {
                Ok(bytes) => self.forwarder.forward(&bytes, proto == Proto::Tcp).await,
                Err(_) => None,
            };
            if let Some(answer) = answer.and_then(|b| Message::from_vec(&b).ok()) {
                reply.metadata.response_code = answer.metadata.response_code;
                reply.add_answers(answer.answers);
            }
        }
        self.finish(request, reply, proto, start)
    }

    /// Both steps, for callers that may wait (TCP, tests).
    pub async fn handle(&self, bytes: &[u8], proto: Proto) -> Option<Vec<u8>> {
        match self.local(bytes, proto) {
            Step::Done(reply) => reply,
            Step::Forward(request, start) => {
                Some(self.forward(bytes, &request, proto, start).await)
            }
            Step::Chase(request, reply, start) => {
                Some(self.chase(&request, *reply, proto, start).await)
            }
        }
    }

    fn finish(&self, request: &Message, reply: Message, proto: Proto, start: Instant) -> Vec<u8> {
        let limit = (proto == Proto::Udp).then(|| udp_limit(request));
        let bytes = encode(reply, limit);
        self.count(proto, qtype(request), start, Some(&bytes));
        bytes
    }

    fn count(
        &self,
        proto: Proto,
        qtype: Option<hickory_proto::rr::RecordType>,
        start: Instant,
        reply: Option<&[u8]>,
    ) {
        let t = type_label(qtype);
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                proto: proto.label(),
                r#type: t,
            })
            .inc();
        if let Some(reply) = reply {
            self.metrics
                .responses
                .get_or_create(&RcodeLabels {
                    rcode: crate::metrics::rcode_label(reply),
                })
                .inc();
        }
        self.metrics
            .duration
            .get_or_create(&TypeLabels { r#type: t })
            .observe(start.elapsed().as_secs_f64());
    }
}

/// The target and type to ask the upstreams for, when `reply` (authoritative, to an
/// address query) ends in a CNAME that left the cluster domain.
fn external_target(
    zone: &Zone,
    request: &Message,
    reply: &Message,
) -> Option<(hickory_proto::rr::Name, hickory_proto::rr::RecordType)> {
    use hickory_proto::rr::{RData, RecordType};
    let qtype = qtype(request)?;
    if !matches!(qtype, RecordType::A | RecordType::AAAA) || !reply.metadata.authoritative {
        return None;
    }
    match &reply.answers.last()?.data {
        // A target inside the cluster was followed already (answer::resolve).
        RData::CNAME(c) if !zone.domain.zone_of(&c.0.to_lowercase()) => Some((c.0.clone(), qtype)),
        _ => None,
    }
}

fn qtype(request: &Message) -> Option<hickory_proto::rr::RecordType> {
    request.queries.first().map(|q| q.query_type())
}

/// Answer datagrams on `sock` until the task is aborted.
pub async fn serve_udp(sock: Arc<UdpSocket>, handler: Arc<Handler>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems.
                tracing::debug!(error = %e, "udp receive");
                continue;
            }
        };
        match handler.local(&buf[..n], Proto::Udp) {
            Step::Done(Some(reply)) => send(&sock, &reply, peer).await,
            Step::Done(None) => {}
            Step::Forward(request, start) => {
                let bytes = buf[..n].to_vec();
                let (sock, handler) = (sock.clone(), handler.clone());
                tokio::spawn(async move {
                    let reply = handler.forward(&bytes, &request, Proto::Udp, start).await;
                    send(&sock, &reply, peer).await;
                });
            }
            Step::Chase(request, reply, start) => {
                let (sock, handler) = (sock.clone(), handler.clone());
                tokio::spawn(async move {
                    let reply = handler.chase(&request, *reply, Proto::Udp, start).await;
                    send(&sock, &reply, peer).await;
                });
            }
        }
    }
}

async fn send(sock: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(e) = sock.send_to(reply, peer).await {
        tracing::debug!(%peer, error = %e, "udp send");
    }
}

/// Accept TCP connections on `listener` until the task is aborted.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                tokio::spawn(serve_connection(conn, handler.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Queries one after another on one connection, until EOF, an error or idleness.
async fn serve_connection(mut conn: TcpStream, handler: Arc<Handler>) {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, conn.read_u16()).await {
            Ok(Ok(n)) => n as usize,
            _ => return,
        };
        let mut query = vec![0u8; len];
        if !matches!(
            tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Some(reply) = handler.handle(&query, Proto::Tcp).await else {
            return;
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&reply);
        if conn.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::OwnAddresses;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    fn handler() -> Handler {
        let own = OwnAddresses {
            bind: "127.0.0.1:53".parse().unwrap(),
            service_ip: "10.96.0.10".parse().unwrap(),
            publish: None,
        };
        let mut registry = prometheus_client::registry::Registry::default();
        Handler {
            zone: Zone::new("cluster.local", own.service_ip).unwrap(),
            snapshot: Arc::new(RwLock::new(Arc::new(Snapshot::default()))),
            forwarder: Forwarder::from_options(&[], std::path::Path::new("/nonexistent"), &own)
                .unwrap(),
            metrics: Metrics::new(&mut registry),
        }
    }

    /// Mangled queries (every byte flipped in turn, truncated at every length, and
    /// pseudo-random bytes) never panic, and whatever is sent back parses.
    #[test]
    fn mangled_queries_never_panic() {
        let h = handler();
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("_http._tcp.web.ns1.svc.cluster.local.").unwrap(),
            RecordType::SRV,
        ));
        let good = q.to_vec().unwrap();
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for i in 0..good.len() {
            for flip in [0x01u8, 0x20, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] ^= flip;
                inputs.push(b);
            }
            inputs.push(good[..i].to_vec());
        }
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        for len in 0..600 {
            let mut b = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b.push((seed >> 33) as u8);
            }
            inputs.push(b);
        }
        for input in inputs {
            for proto in [Proto::Udp, Proto::Tcp] {
                if let Step::Done(Some(reply)) = h.local(&input, proto) {
                    assert!(reply.len() >= 12, "{input:?}");
                    if proto == Proto::Udp {
                        assert!(reply.len() <= 65535);
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn no_upstream_is_servfail() {
        let h = handler();
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::A,
        ));
        let reply = h.handle(&q.to_vec().unwrap(), Proto::Udp).await.unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.metadata.id, q.metadata.id);
        assert_eq!(m.queries, q.queries);
    }
}
