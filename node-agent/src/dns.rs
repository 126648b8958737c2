//! A pod's `/etc/resolv.conf` (as the CRI `DnsConfig` of its sandbox) and its managed
//! `/etc/hosts`, as the kubelet's DNS configurer and hosts-file writer make them.

use std::net::IpAddr;

use k8s_cri::v1::DnsConfig;
use k8s_openapi::api::core::v1::Pod;

/// Kubernetes' limits on a pod's resolver configuration.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;
/// glibc aborts on a search domain longer than this (the kubelet drops them).
const MAX_SEARCH_DOMAIN_LEN: usize = 253;

/// The resolver configuration of `pod` per its `dnsPolicy`:
/// - `ClusterFirst`: the cluster DNS servers, searches `<ns>.svc.<domain> svc.<domain>
///   <domain>` then the host's, `options ndots:5`; the host's configuration when no
///   cluster DNS is configured, or when the pod uses the host network.
/// - `ClusterFirstWithHostNet`: `ClusterFirst`, host network or not.
/// - `Default`: the host's resolv.conf (`host_resolv_conf` is its content).
/// - `None`: nothing but `dnsConfig`.
///
/// `dnsConfig` is then merged in (servers and searches appended without duplicates,
/// options by name, the pod's winning) and the result cut to Kubernetes' limits.
pub fn dns_config(
    pod: &Pod,
    cluster_dns: &[IpAddr],
    cluster_domain: &str,
    host_resolv_conf: &str,
) -> Result<DnsConfig, String> {
    let spec = pod.spec.as_ref();
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let host = parse_resolv_conf(host_resolv_conf);
    let mut cfg = match policy {
        "None" => DnsConfig::default(),
        "" | "ClusterFirst" | "ClusterFirstWithHostNet"
            if !cluster_dns.is_empty()
                && (policy == "ClusterFirstWithHostNet" || !host_network) =>
        {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let searches = if cluster_domain.is_empty() {
                host.searches
            } else {
                let mut s = vec![
                    format!("{ns}.svc.{cluster_domain}"),
                    format!("svc.{cluster_domain}"),
                    cluster_domain.to_string(),
                ];
                s.extend(host.searches);
                dedup(s)
            };
            DnsConfig {
                servers: cluster_dns.iter().map(IpAddr::to_string).collect(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        // Cluster DNS unknown (the kubelet warns MissingClusterDNS), host network
        // with ClusterFirst, or Default: the host's.
        "" | "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" => host,
        other => return Err(format!("invalid DNSPolicy={other}")),
    };
    if let Some(pc) = spec.and_then(|s| s.dns_config.as_ref()) {
        cfg.servers.extend(pc.nameservers.iter().flatten().cloned());
        cfg.servers = dedup(std::mem::take(&mut cfg.servers));
        cfg.searches.extend(pc.searches.iter().flatten().cloned());
        cfg.searches = dedup(std::mem::take(&mut cfg.searches));
        let pod_options: Vec<(String, String)> = pc
            .options
            .iter()
            .flatten()
            .map(|o| {
                (
                    o.name.clone().unwrap_or_default(),
                    o.value.clone().unwrap_or_default(),
                )
            })
            .collect();
        cfg.options = merge_options(&cfg.options, &pod_options);
    }
    cfg.servers.truncate(MAX_NAMESERVERS);
    cfg.searches = fit_searches(cfg.searches);
    Ok(cfg)
}

/// Options by name: a pod's option replaces the existing one of its name in place.
fn merge_options(existing: &[String], pod: &[(String, String)]) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut put = |name: &str, value: &str| match merged.iter_mut().find(|(n, _)| n == name) {
        Some(e) => e.1 = value.to_string(),
        None => merged.push((name.to_string(), value.to_string())),
    };
    for o in existing {
        let (n, v) = o.split_once(':').unwrap_or((o, ""));
        put(n, v);
    }
    for (n, v) in pod {
        put(n, v);
    }
    merged
        .into_iter()
        .map(|(n, v)| if v.is_empty() { n } else { format!("{n}:{v}") })
        .collect()
}

/// At most 32 search domains, none longer than 253, at most 2048 characters in all
/// (cut from the end), as the kubelet cuts them.
fn fit_searches(mut s: Vec<String>) -> Vec<String> {
    s.truncate(MAX_SEARCH_PATHS);
    s.retain(|d| d.len() <= MAX_SEARCH_DOMAIN_LEN);
    while !s.is_empty() && s.join(" ").len() > MAX_SEARCH_CHARS {
        s.pop();
    }
    s
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// `nameserver`, `search` (the last line wins; `.` dropped, trailing dots trimmed) and
/// `options` of a resolv.conf.
pub fn parse_resolv_conf(content: &str) -> DnsConfig {
    let mut cfg = DnsConfig::default();
    for line in content.lines() {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => cfg.servers.extend(fields.next().map(str::to_string)),
            Some("search") => {
                cfg.searches = fields
                    .filter(|s| *s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some("options") => {
                let pairs: Vec<(String, String)> = fields
                    .map(|o| {
                        let (n, v) = o.split_once(':').unwrap_or((o, ""));
                        (n.to_string(), v.to_string())
                    })
                    .collect();
                cfg.options = merge_options(&cfg.options, &pairs);
            }
            _ => {}
        }
    }
    cfg
}

/// The pod's hostname and domain: `spec.hostname` or the pod's name (cut to 63
/// characters, without a trailing `-` or `.`), and with `spec.subdomain` the domain
/// `<subdomain>.<ns>.svc.<cluster_domain>` (else empty).
pub fn pod_hostname(pod: &Pod, cluster_domain: &str) -> (String, String) {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let hostname = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
        .unwrap_or(name);
    let hostname = if hostname.len() > 63 {
        let mut cut = 63;
        while !hostname.is_char_boundary(cut) {
            cut -= 1;
        }
        hostname[..cut].trim_end_matches(['-', '.']).to_string()
    } else {
        hostname.to_string()
    };
    let domain = match spec.and_then(|s| s.subdomain.as_deref()) {
        Some(sub) if !sub.is_empty() => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            format!("{sub}.{ns}.svc.{cluster_domain}")
        }
        _ => String::new(),
    };
    (hostname, domain)
}

const HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";

/// The kubelet's managed `/etc/hosts` of a pod with its own network: localhost lines,
/// one line per pod IP (`<ip>\t<host>.<domain>\t<host>`, or `<ip>\t<host>` without a
/// domain), then the pod's hostAliases.
pub fn hosts_file(pod: &Pod, pod_ips: &[String], hostname: &str, domain: &str) -> String {
    let mut out = String::from(HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        if domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    out.push_str(&host_aliases(pod));
    out
}

/// The `/etc/hosts` of a host-network pod: the node's own file, then hostAliases.
pub fn host_network_hosts_file(pod: &Pod, node_hosts: &str) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
    out.push_str(node_hosts);
    if !node_hosts.is_empty() && !node_hosts.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&host_aliases(pod));
    out
}

fn host_aliases(pod: &Pod) -> String {
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_deref())
        .unwrap_or(&[]);
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.as_deref().unwrap_or(&[]).join("\t");
        out.push_str(&format!("{}\t{names}\n", a.ip));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": spec,
        }))
        .unwrap()
    }

    const HOST: &str = "# generated\nnameserver 192.168.1.1\nnameserver 192.168.1.2\n; comment\nsearch old.example\nsearch corp.example. . lab.example\noptions ndots:2 timeout:1\noptions ndots:3\n";

    fn dns() -> Vec<IpAddr> {
        vec!["10.96.0.10".parse().unwrap()]
    }

    #[test]
    fn parses_host_resolv_conf() {
        let c = parse_resolv_conf(HOST);
        assert_eq!(c.servers, ["192.168.1.1", "192.168.1.2"]);
        assert_eq!(c.searches, ["corp.example", "lab.example"]);
        assert_eq!(c.options, ["ndots:3", "timeout:1"]);
    }

    #[test]
    fn policies() {
        struct Case {
            spec: serde_json::Value,
            cluster_dns: Vec<IpAddr>,
            servers: Vec<&'static str>,
            searches: Vec<&'static str>,
            options: Vec<&'static str>,
        }
        let cluster_searches = vec![
            "shop.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.example",
            "lab.example",
        ];
        let cases = [
            Case {
                spec: json!({"containers": [], "dnsPolicy": "ClusterFirst"}),
                cluster_dns: dns(),
                servers: vec!["10.96.0.10"],
                searches: cluster_searches.clone(),
                options: vec!["ndots:5"],
            },
            // Default policy is ClusterFirst.
            Case {
                spec: json!({"containers": []}),
                cluster_dns: dns(),
                servers: vec!["10.96.0.10"],
                searches: cluster_searches.clone(),
                options: vec!["ndots:5"],
            },
            // No cluster DNS: the host's, as the kubelet falls back.
            Case {
                spec: json!({"containers": [], "dnsPolicy": "ClusterFirst"}),
                cluster_dns: vec![],
                servers: vec!["192.168.1.1", "192.168.1.2"],
                searches: vec!["corp.example", "lab.example"],
                options: vec!["ndots:3", "timeout:1"],
            },
            // Host network + ClusterFirst = Default.
            Case {
                spec: json!({"containers": [], "dnsPolicy": "ClusterFirst", "hostNetwork": true}),
                cluster_dns: dns(),
                servers: vec!["192.168.1.1", "192.168.1.2"],
                searches: vec!["corp.example", "lab.example"],
                options: vec!["ndots:3", "timeout:1"],
            },
            Case {
                spec: json!({"containers": [], "dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true}),
                cluster_dns: dns(),
                servers: vec!["10.96.0.10"],
                searches: cluster_searches.clone(),
                options: vec!["ndots:5"],
            },
            Case {
                spec: json!({"containers": [], "dnsPolicy": "Default"}),
                cluster_dns: dns(),
                servers: vec!["192.168.1.1", "192.168.1.2"],
                searches: vec!["corp.example", "lab.example"],
                options: vec!["ndots:3", "timeout:1"],
            },
            Case {
                spec: json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                    "nameservers": ["1.1.1.1", "1.1.1.1", "8.8.8.8"],
                    "searches": ["a.example", "b.example"],
                    "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]
                }}),
                cluster_dns: dns(),
                servers: vec!["1.1.1.1", "8.8.8.8"],
                searches: vec!["a.example", "b.example"],
                options: vec!["ndots:1", "edns0"],
            },
            // dnsConfig merges into ClusterFirst; the pod's option value wins; servers
            // are cut to three.
            Case {
                spec: json!({"containers": [], "dnsPolicy": "ClusterFirst", "dnsConfig": {
                    "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"],
                    "searches": ["svc.cluster.local", "extra.example"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]
                }}),
                cluster_dns: dns(),
                servers: vec!["10.96.0.10", "1.1.1.1", "2.2.2.2"],
                searches: {
                    let mut s = cluster_searches.clone();
                    s.push("extra.example");
                    s
                },
                options: vec!["ndots:2", "single-request"],
            },
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let got = dns_config(&pod(c.spec), &c.cluster_dns, "cluster.local", HOST).unwrap();
            assert_eq!(got.servers, c.servers, "case {i}");
            assert_eq!(got.searches, c.searches, "case {i}");
            assert_eq!(got.options, c.options, "case {i}");
        }
        let err = dns_config(
            &pod(json!({"containers": [], "dnsPolicy": "Bogus"})),
            &dns(),
            "cluster.local",
            HOST,
        )
        .unwrap_err();
        assert_eq!(err, "invalid DNSPolicy=Bogus");
    }

    #[test]
    fn search_limits() {
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let p =
            pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {"searches": many}}));
        let got = dns_config(&p, &[], "cluster.local", "").unwrap();
        assert_eq!(got.searches.len(), 32);
        assert_eq!(got.searches[31], "d31.example");

        let long = "x".repeat(254);
        let wide: Vec<String> = (0..12)
            .map(|i| format!("{i:02}{}", "y".repeat(198)))
            .collect();
        let mut searches = vec![long];
        searches.extend(wide);
        let p = pod(
            json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {"searches": searches}}),
        );
        let got = dns_config(&p, &[], "cluster.local", "").unwrap();
        assert!(
            got.searches.iter().all(|s| s.len() == 200),
            "the 254-char domain is dropped"
        );
        let line = got.searches.join(" ");
        assert!(line.len() <= 2048, "{}", line.len());
        assert_eq!(got.searches.len(), 10, "cut from the end to fit 2048");
    }

    #[test]
    fn hostnames() {
        let (h, d) = pod_hostname(&pod(json!({"containers": []})), "cluster.local");
        assert_eq!((h.as_str(), d.as_str()), ("web-0", ""));
        let (h, d) = pod_hostname(
            &pod(json!({"containers": [], "hostname": "db", "subdomain": "backends"})),
            "cluster.local",
        );
        assert_eq!(
            (h.as_str(), d.as_str()),
            ("db", "backends.shop.svc.cluster.local")
        );
        let long: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("{}-{}", "a".repeat(62), "b".repeat(10)), "namespace": "x"},
            "spec": {"containers": []}
        }))
        .unwrap();
        let (h, _) = pod_hostname(&long, "cluster.local");
        assert_eq!(h, "a".repeat(62), "cut to 63 and the trailing '-' dropped");
    }

    #[test]
    fn hosts_files() {
        let p = pod(json!({"containers": [], "hostAliases": [
            {"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]},
            {"ip": "10.1.2.4", "hostnames": ["baz"]}
        ]}));
        let got = hosts_file(
            &p,
            &["10.244.1.7".into()],
            "db",
            "backends.shop.svc.cluster.local",
        );
        assert_eq!(
            got,
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             10.244.1.7\tdb.backends.shop.svc.cluster.local\tdb\n\
             \n\
             # Entries added by HostAliases.\n\
             10.1.2.3\tfoo.local\tbar.local\n\
             10.1.2.4\tbaz\n"
        );
        let plain = pod(json!({"containers": []}));
        let got = hosts_file(
            &plain,
            &["10.244.1.7".into(), "fd00::7".into()],
            "web-0",
            "",
        );
        assert!(
            got.ends_with("fe00::2\tip6-allrouters\n10.244.1.7\tweb-0\nfd00::7\tweb-0\n"),
            "{got}"
        );
        assert!(!got.contains("HostAliases"));

        let got = host_network_hosts_file(&p, "127.0.0.1 localhost\n10.0.0.1 node");
        assert!(got.starts_with("# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n10.0.0.1 node\n\n# Entries added by HostAliases.\n"));
    }
}
