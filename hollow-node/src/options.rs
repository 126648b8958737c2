//! [`HollowOptions`]: the flags of `keelson hollow-nodes`, usable from tests.

use std::time::Duration;

use clap::{Args, Parser};

/// What to simulate: how many nodes, what they look like, and how fast their pods run.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct HollowOptions {
    /// Number of nodes to register.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Node name prefix; nodes are `<prefix>0`, `<prefix>1`, ...
    #[arg(long, default_value = "hollow-")]
    pub name_prefix: String,
    /// `status.capacity.cpu` (and allocatable) of every node.
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// `status.capacity.memory`.
    #[arg(long, default_value = "16Gi")]
    pub memory: String,
    /// `status.capacity.pods`.
    #[arg(long, default_value = "110")]
    pub pods: String,
    /// `status.capacity.ephemeral-storage`.
    #[arg(long, default_value = "100Gi")]
    pub ephemeral_storage: String,
    /// Extra node labels: `k=v,k2=v2`.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Spread `topology.kubernetes.io/zone=zone-0..N-1` round-robin (0: no zone label).
    #[arg(long, default_value_t = 0)]
    pub zones: usize,
    /// Time from a pod being bound (seen) to Running and Ready.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ready_delay: Duration,
    /// How long restartPolicy Never/OnFailure pods run before they succeed (per pod:
    /// annotation `hollow.keelson.dev/run-duration`).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub run_duration: Duration,
    /// How long "stopping the containers" of a deleted pod takes (capped at the pod's
    /// deletionGracePeriodSeconds).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub terminate_delay: Duration,
    /// `spec.leaseDurationSeconds` of the node Leases.
    #[arg(long, default_value_t = 40)]
    pub lease_duration_seconds: i32,
    /// How often each node's Lease is renewed (renewals spread over the interval).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub renew_interval: Duration,
    /// How often each node's Ready condition heartbeat is refreshed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub node_status_interval: Duration,
    /// Pod workers: pod status writes and deletions in flight at once.
    #[arg(long, default_value_t = 16)]
    pub pod_workers: usize,
    /// Node registrations, Lease renewals and node status writes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub max_in_flight: usize,
}

#[derive(Parser)]
#[command(name = "hollow-nodes", no_binary_name = true)]
struct Wrapper {
    #[command(flatten)]
    opts: HollowOptions,
}

impl HollowOptions {
    /// Parse flags (without a program name), e.g. `["--count", "3", "--zones", "2"]`.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Ok(Wrapper::try_parse_from(args)?.opts)
    }

    /// The defaults with `count` nodes.
    pub fn with_count(count: usize) -> Self {
        HollowOptions {
            count,
            ..Default::default()
        }
    }

    /// The name of node `index`.
    pub fn node_name(&self, index: usize) -> String {
        format!("{}{index}", self.name_prefix)
    }
}

impl Default for HollowOptions {
    /// The CLI defaults.
    fn default() -> Self {
        HollowOptions::try_parse_from(std::iter::empty::<String>()).expect("defaults parse")
    }
}

/// `k=v` (a label; the value may be empty).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("label {s:?}: expected key=value")),
    }
}

/// A duration such as `500ms`, `2s`, `1m30s`, `1h`, `250us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let err = || format!("invalid duration {s:?} (examples: 500ms, 2s, 1m30s)");
    if s.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| err());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(n * unit).map_err(|_| err())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("3"), Ok(ms(3000)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "5x", "-1s", "1s2", "ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn defaults_and_flags() {
        let d = HollowOptions::default();
        assert_eq!(d.count, 1);
        assert_eq!(d.name_prefix, "hollow-");
        assert_eq!((d.cpu.as_str(), d.memory.as_str()), ("4", "16Gi"));
        assert_eq!(
            (d.pods.as_str(), d.ephemeral_storage.as_str()),
            ("110", "100Gi")
        );
        assert_eq!(d.ready_delay, Duration::ZERO);
        assert_eq!(d.run_duration, Duration::from_secs(1));
        assert_eq!(d.lease_duration_seconds, 40);
        assert_eq!(d.renew_interval, Duration::from_secs(10));
        assert_eq!(d.node_status_interval, Duration::from_secs(60));
        assert_eq!(d.node_name(7), "hollow-7");

        let o = HollowOptions::try_parse_from([
            "--count",
            "5",
            "--labels",
            "a=b,c=d",
            "--zones",
            "3",
            "--ready-delay",
            "250ms",
            "--name-prefix",
            "sim-",
        ])
        .unwrap();
        assert_eq!(o.count, 5);
        assert_eq!(
            o.labels,
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        assert_eq!(o.zones, 3);
        assert_eq!(o.ready_delay, Duration::from_millis(250));
        assert_eq!(o.node_name(0), "sim-0");
        assert!(HollowOptions::try_parse_from(["--labels", "novalue"]).is_err());
    }
}
