//! The nft text of a [`Model`]: one `inet` table with peer sets, a verdict map per
//! direction and family from local pod address to that pod's chain, and the base chains.
//!
//! Packet path: `forward` sees pod traffic crossing the node (routed, and bridged through
//! br_netfilter), `input` sees pods talking to the node itself. Replies of allowed
//! connections pass first; then the source pod's egress chain, then the destination
//! pod's ingress chain. A pod chain `return`s when a rule allows the packet and drops at
//! its end, so both directions must allow. Node-originated traffic (probes) takes the
//! `output` hook, which this table leaves alone.

use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::model::{AddressSet, Allow, Model, NamedPortTargets, Ports};

/// The table this module owns.
pub const TABLE: &str = "keelson-netpol";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
    /// The peer's address field: where ingress comes from, where egress goes.
    fn peer_field(self) -> &'static str {
        match self {
            Direction::Ingress => "saddr",
            Direction::Egress => "daddr",
        }
    }
}

/// The `table inet keelson-netpol { ... }` block for `model`.
pub fn table(model: &Model) -> String {
    let mut out = String::new();
    let o = &mut out;
    w(o, format_args!("table inet {TABLE} {{\n"));
    for (id, set) in model.address_sets.iter().enumerate() {
        address_set(o, id, set);
    }
    for (id, set) in model.named_port_sets.iter().enumerate() {
        named_set(o, id, set);
    }
    for dir in [Direction::Ingress, Direction::Egress] {
        let chains = pod_chains(model, dir);
        verdict_maps(o, model, dir, &chains);
        for (i, (body, pods)) in chains.bodies.iter().enumerate() {
            let d = dir.name();
            let who = match pods.as_slice() {
                [one] => one.to_string(),
                [first, rest @ ..] => format!("{first} and {} more", rest.len()),
                [] => String::new(),
            };
            w(
                o,
                format_args!(
                    "\tchain {d}-{i} {{\n\t\tcomment {}\n{body}\t\tcounter drop\n\t}}\n",
                    quoted(&who)
                ),
            );
        }
    }
    let egress = "\t\tip saddr vmap @egress-v4\n\t\tip6 saddr vmap @egress-v6\n";
    let ingress = "\t\tip daddr vmap @ingress-v4\n\t\tip6 daddr vmap @ingress-v6\n";
    w(
        o,
        format_args!(
            "\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n\
         \t\tfib saddr type local accept\n{egress}{ingress}\t}}\n"
        ),
    );
    w(
        o,
        format_args!(
            "\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n\
         \t\tct state established,related accept\n{egress}\t}}\n"
        ),
    );
    out.push_str("}\n");
    out
}

/// One atomic `nft -f` input that replaces the table whatever state it was in: the
/// empty `table` makes the `delete` valid when the table does not exist yet.
pub fn transaction(table_text: &str) -> String {
    format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n{table_text}")
}

fn w(out: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing to a String cannot fail.
    let _ = out.write_fmt(args);
}

/// A string literal for nft: names here are DNS labels, but never trust them; nft
/// limits comments to 128 bytes.
fn quoted(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(120)
        .collect();
    format!("\"{clean}\"")
}

fn v4(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn v6(a: u128) -> Ipv6Addr {
    Ipv6Addr::from(a)
}

fn range<T: std::fmt::Display + PartialEq>(lo: T, hi: T) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

fn elements(o: &mut String, items: Vec<String>) {
    if !items.is_empty() {
        w(
            o,
            format_args!("\t\telements = {{ {} }}\n", items.join(", ")),
        );
    }
}

fn address_set(o: &mut String, id: usize, set: &AddressSet) {
    if !set.v4.is_empty() {
        w(
            o,
            format_args!("\tset peers-{id}-v4 {{\n\t\ttype ipv4_addr\n\t\tflags interval\n"),
        );
        elements(
            o,
            set.v4
                .iter()
                .map(|(lo, hi)| range(v4(*lo), v4(*hi)))
                .collect(),
        );
        o.push_str("\t}\n");
    }
    if !set.v6.is_empty() {
        w(
            o,
            format_args!("\tset peers-{id}-v6 {{\n\t\ttype ipv6_addr\n\t\tflags interval\n"),
        );
        elements(
            o,
            set.v6
                .iter()
                .map(|(lo, hi)| range(v6(*lo), v6(*hi)))
                .collect(),
        );
        o.push_str("\t}\n");
    }
}

fn named_set(o: &mut String, id: usize, set: &NamedPortTargets) {
    if !set.v4.is_empty() {
        w(o, format_args!(
            "\tset named-{id}-v4 {{\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tflags interval\n"
        ));
        elements(
            o,
            set.v4
                .iter()
                .map(|(a, p, lo, hi)| format!("{} . {} . {}", v4(*a), p.nft(), range(lo, hi)))
                .collect(),
        );
        o.push_str("\t}\n");
    }
    if !set.v6.is_empty() {
        w(o, format_args!(
            "\tset named-{id}-v6 {{\n\t\ttype ipv6_addr . inet_proto . inet_service\n\t\tflags interval\n"
        ));
        elements(
            o,
            set.v6
                .iter()
                .map(|(a, p, lo, hi)| format!("{} . {} . {}", v6(*a), p.nft(), range(lo, hi)))
                .collect(),
        );
        o.push_str("\t}\n");
    }
}

/// The pod chains of one direction: pods whose rules print the same share a chain (the
/// replicas of a workload), so the table grows with distinct rule sets, not pods.
struct Chains<'a> {
    /// Chain body -> the pods using it, in order of first use.
    bodies: Vec<(String, Vec<&'a str>)>,
    /// For each pod of the model: its chain, when isolated in this direction.
    of_pod: Vec<Option<usize>>,
}

fn pod_chains(model: &Model, dir: Direction) -> Chains<'_> {
    let mut chains = Chains {
        bodies: Vec::new(),
        of_pod: Vec::new(),
    };
    let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for pod in &model.pods {
        let allows = match dir {
            Direction::Ingress => &pod.ingress,
            Direction::Egress => &pod.egress,
        };
        let Some(allows) = allows else {
            chains.of_pod.push(None);
            continue;
        };
        let mut body = String::new();
        for allow in allows {
            allow_rules(&mut body, model, dir, allow);
        }
        let id = *ids.entry(body.clone()).or_insert_with(|| {
            chains.bodies.push((body, Vec::new()));
            chains.bodies.len() - 1
        });
        chains.bodies[id].1.push(&pod.key);
        chains.of_pod.push(Some(id));
    }
    chains
}

/// `ingress-v4` etc.: local pod address -> `jump` to its chain.
fn verdict_maps(o: &mut String, model: &Model, dir: Direction, chains: &Chains) {
    let d = dir.name();
    let mut four = Vec::new();
    let mut six = Vec::new();
    for (pod, chain) in model.pods.iter().zip(&chains.of_pod) {
        let Some(i) = chain else { continue };
        for ip in &pod.ips {
            let element = format!("{ip} : jump {d}-{i}");
            if ip.is_ipv4() {
                four.push(element);
            } else {
                six.push(element);
            }
        }
    }
    w(
        o,
        format_args!("\tmap {d}-v4 {{\n\t\ttype ipv4_addr : verdict\n"),
    );
    elements(o, four);
    o.push_str("\t}\n");
    w(
        o,
        format_args!("\tmap {d}-v6 {{\n\t\ttype ipv6_addr : verdict\n"),
    );
    elements(o, six);
    o.push_str("\t}\n");
}

/// The rules of one [`Allow`] in a pod chain; each `return`s (passes this direction).
fn allow_rules(o: &mut String, model: &Model, dir: Direction, allow: &Allow) {
    match allow {
        Allow::Peers {
            peers,
            ports,
            policy,
        } => {
            let comment = quoted(policy);
            // One address match per family the peers have; `None` is any address.
            let matches: Vec<String> = match peers {
                None => vec![String::new()],
                Some(id) => {
                    let set = &model.address_sets[*id];
                    let f = dir.peer_field();
                    let mut m = Vec::new();
                    if !set.v4.is_empty() {
                        m.push(format!("ip {f} @peers-{id}-v4 "));
                    }
                    if !set.v6.is_empty() {
                        m.push(format!("ip6 {f} @peers-{id}-v6 "));
                    }
                    m
                }
            };
            for m in matches {
                match ports {
                    Ports::Any => w(o, format_args!("\t\t{m}return comment {comment}\n")),
                    Ports::Numeric(by_proto) => {
                        for (proto, ranges) in by_proto {
                            let p = proto.nft();
                            if ranges.is_empty() {
                                w(
                                    o,
                                    format_args!(
                                        "\t\t{m}meta l4proto {p} return comment {comment}\n"
                                    ),
                                );
                            } else {
                                let list: Vec<String> =
                                    ranges.iter().map(|(lo, hi)| range(lo, hi)).collect();
                                w(o, format_args!(
                                    "\t\t{m}meta l4proto {p} th dport {{ {} }} return comment {comment}\n",
                                    list.join(", ")
                                ));
                            }
                        }
                    }
                }
            }
        }
        Allow::NamedPorts { set, policy } => {
            let comment = quoted(policy);
            let targets = &model.named_port_sets[*set];
            let f = dir.peer_field();
            if !targets.v4.is_empty() {
                w(o, format_args!(
                    "\t\tip {f} . meta l4proto . th dport @named-{set}-v4 return comment {comment}\n"
                ));
            }
            if !targets.v6.is_empty() {
                w(o, format_args!(
                    "\t\tip6 {f} . meta l4proto . th dport @named-{set}-v6 return comment {comment}\n"
                ));
            }
        }
    }
}
