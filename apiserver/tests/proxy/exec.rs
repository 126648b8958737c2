//! `pods/exec`, `pods/attach`, `pods/portforward`: upgrades relayed to the node agent
//! and spliced after its 101.

use crate::support::{ENV, NODE};

fn upgrade_request(path: &str, upgrade: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n\
         X-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

#[test]
fn exec_upgrade_is_spliced_end_to_end() {
    let env = &*ENV;
    env.pod("shell", NODE, &["app"], &[], &[]);
    let (mut conn, head) = env.raw_tls(&upgrade_request(
        "/api/v1/namespaces/default/pods/shell/exec?command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true",
        "SPDY/3.1",
        "",
    ));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header(&head, "x-stream-protocol-version"),
        "v4.channel.k8s.io"
    );
    assert_eq!(
        header(&head, "x-fake-path"),
        "/exec/default/shell/app?command=sh&command=-c&command=echo+hi&stdin=true&input=1&stdout=true&output=1"
    );
    conn.send(b"ping over spdy");
    assert_eq!(conn.read_exact(14), b"ping over spdy");
    conn.send(&[0, 1, 2, 254, 255]);
    assert_eq!(conn.read_exact(5), [0, 1, 2, 254, 255]);
}

#[test]
fn attach_and_portforward_reach_their_agent_paths() {
    let env = &*ENV;
    env.pod("attached", NODE, &["main", "side"], &[], &[]);
    let (mut conn, head) = env.raw_tls(&upgrade_request(
        "/api/v1/namespaces/default/pods/attached/attach?container=side&stdout=true&stderr=true",
        "SPDY/3.1",
        "",
    ));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header(&head, "x-fake-path"),
        "/attach/default/attached/side?stdout=true&output=1&stderr=true&error=1"
    );
    conn.send(b"x");
    assert_eq!(conn.read_exact(1), b"x");

    let (_, head) = env.raw_tls(&upgrade_request(
        "/api/v1/namespaces/default/pods/attached/portforward?ports=8080&ports=9090",
        "SPDY/3.1",
        "",
    ));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header(&head, "x-fake-path"),
        "/portForward/default/attached?ports=8080&ports=9090"
    );
}

#[test]
fn a_refused_websocket_upgrade_is_relayed_as_is() {
    let env = &*ENV;
    env.pod("ws", NODE, &["app"], &[], &[]);
    let (conn, head) = env.raw_tls(&upgrade_request(
        "/api/v1/namespaces/default/pods/ws/exec?command=true&stdout=true",
        "websocket",
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n",
    ));
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let mut conn = conn;
    let all = conn.read_until(head, "websocket refused by the fake kubelet");
    assert!(
        all.contains("websocket refused by the fake kubelet"),
        "{all}"
    );
}

#[test]
fn exec_errors_are_kubernetes_statuses() {
    let env = &*ENV;
    env.pod("two", NODE, &["a", "b"], &[], &[]);
    let base = "/api/v1/namespaces/default/pods";
    let (_, _, err) = env.raw(&format!("{base}/two/exec?container=a&stdout=true"));
    assert!(
        err.contains("(BadRequest): you must specify at least 1 command"),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/two/exec?command=ls&stdout=true"));
    assert!(
        err.contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/absent/exec?command=ls"));
    assert!(err.contains("pods \"absent\" not found"), "{err}");
    // Without an upgrade the agent's answer (a plain-text 400) comes back unchanged,
    // which kubectl reports by its code.
    let (ok_, _, err) = env.raw(&format!(
        "{base}/two/exec?command=ls&container=a&stdout=true"
    ));
    assert!(!ok_ && err.contains("(BadRequest)"), "{err}");
}
