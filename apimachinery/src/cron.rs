//! Cron schedules as Kubernetes reads them (robfig/cron v3's `ParseStandard`): five
//! fields (minute, hour, day of month, month, day of week) with `*`, `?`, lists, ranges,
//! steps and names (`JAN`..`DEC`, `SUN`..`SAT`); the descriptors `@yearly`/`@annually`,
//! `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly` and `@every <duration>`; and
//! an optional `TZ=<zone>` or `CRON_TZ=<zone>` prefix. Errors read like robfig's.
//!
//! Only parsing lives here; finding activation times needs a time-zone database and is
//! the controller's business.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub kind: Kind,
    /// The zone name of a `TZ=`/`CRON_TZ=` prefix, not looked up.
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Cron(Fields),
    /// `@every`: a constant delay, whole seconds, at least one.
    Every(Duration),
}

/// One bit per allowed value. `*_star` records a `*` or `?` field, which switches the
/// day-of-month/day-of-week rule from "either matches" to "both match".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub minute: u64,
    pub hour: u64,
    pub dom: u64,
    pub month: u64,
    pub dow: u64,
    pub dom_star: bool,
    pub dow_star: bool,
}

/// Whether bit `v` is set.
pub fn has(bits: u64, v: impl Into<i64>) -> bool {
    let v = v.into();
    (0..64).contains(&v) && bits & (1 << v) != 0
}

impl Fields {
    /// Whether a day matches: day of month (1-31) and day of week (0 = Sunday).
    pub fn day_matches(&self, dom: impl Into<i64>, dow: impl Into<i64>) -> bool {
        let dom = has(self.dom, dom);
        let dow = has(self.dow, dow);
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

struct Bounds {
    min: u64,
    max: u64,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Go's `strconv.Atoi` followed by robfig's non-negative check.
fn parse_uint(expr: &str) -> Result<u64, String> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: invalid syntax"
        ));
    }
    let n: i64 = expr.parse().map_err(|_| {
        format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: value out of range"
        )
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    Ok(n as u64)
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u64, String> {
    let lower = expr.to_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u64 + b.min);
    }
    parse_uint(expr)
}

/// One `*`, `?`, `n` or `a-b` with an optional `/step`: its bits, and whether it is a
/// star (a `*` or `?` without a step above one).
fn parse_range(expr: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let parts: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = parts[0].split('-').collect();
    let mut star = false;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        star = true;
        (b.min, b.max)
    } else {
        let start = parse_int_or_name(low_high[0], b)?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, parse_int_or_name(low_high[1], b)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match parts.len() {
        1 => 1,
        2 => {
            let step = parse_uint(parts[1])?;
            // `n/step` means from n to the maximum.
            if low_high.len() == 1 {
                end = b.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let step = usize::try_from(step).unwrap_or(usize::MAX);
    let bits = (start..=end).step_by(step).fold(0, |bits, v| bits | 1 << v);
    Ok((bits, star))
}

/// A comma-separated list of ranges.
fn parse_field(field: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0;
    let mut star = false;
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        let (b, s) = parse_range(expr, b)?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

/// Go's `time.ParseDuration`, for `@every`.
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let negative = s.starts_with('-');
    let mut rest = s.strip_prefix(['+', '-']).unwrap_or(s);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return Err(invalid());
        }
        let n: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    // Go's durations are int64 nanoseconds (about 292 years): past that, an error
    // (and no float too large for a Duration).
    if !total.is_finite() || total > i64::MAX as f64 / 1e9 {
        return Err(invalid());
    }
    // Negative delays end up as robfig's one-second minimum.
    Ok(if negative {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(total)
    })
}

fn cron(spec: &str) -> Result<Kind, String> {
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let (minute, _) = parse_field(fields[0], &MINUTES)?;
    let (hour, _) = parse_field(fields[1], &HOURS)?;
    let (dom, dom_star) = parse_field(fields[2], &DOM)?;
    let (month, _) = parse_field(fields[3], &MONTHS)?;
    let (dow, dow_star) = parse_field(fields[4], &DOW)?;
    Ok(Kind::Cron(Fields {
        minute,
        hour,
        dom,
        month,
        dow,
        dom_star,
        dow_star,
    }))
}

/// `cron.ParseStandard`: the schedule, else the error text Kubernetes shows.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    if spec.is_empty() {
        return Err("empty spec string".to_string());
    }
    let mut spec = spec;
    let mut zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        match spec.split_once(' ') {
            Some((prefix, rest)) => {
                zone = Some(prefix[prefix.find('=').unwrap_or(0) + 1..].to_string());
                spec = rest.trim();
            }
            None => return Err(format!("provided bad location {spec}")),
        }
    }
    let kind = match spec {
        "@yearly" | "@annually" => cron("0 0 1 1 *")?,
        "@monthly" => cron("0 0 1 * *")?,
        "@weekly" => cron("0 0 * * 0")?,
        "@daily" | "@midnight" => cron("0 0 * * *")?,
        "@hourly" => cron("0 * * * *")?,
        _ if spec.starts_with('@') => match spec.strip_prefix("@every ") {
            Some(d) => {
                let d = parse_go_duration(d)
                    .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                // robfig: at least one second, and whole seconds.
                Kind::Every(Duration::from_secs(d.as_secs().max(1)))
            }
            None => return Err(format!("unrecognized descriptor: {spec}")),
        },
        _ => cron(spec)?,
    };
    Ok(Schedule { kind, zone })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        parse(spec).unwrap_err()
    }

    #[test]
    fn accepted() {
        for ok in [
            "* * * * *",
            "0 */2 1-15 jan-jun mon,wed",
            "@hourly",
            "@every 1h30m",
            "5 4 * * sun",
            "0 0 ? * *",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(err(""), "empty spec string");
        assert_eq!(
            err("* * * *"),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert_eq!(
            err("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(
            err("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(
            err("@every 99999999999999999999999h"),
            "failed to parse duration @every 99999999999999999999999h: time: invalid duration \"99999999999999999999999h\""
        );
        assert_eq!(
            err("@every 1d"),
            "failed to parse duration @every 1d: time: unknown unit \"d\" in duration \"1d\""
        );
        assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(err("TZ=UTC"), "provided bad location TZ=UTC");
    }

    #[test]
    fn fields_and_descriptors() {
        let Kind::Cron(f) = parse("*/15 6-16/4 * JAN,dec MON-FRI").unwrap().kind else {
            panic!("not a cron schedule");
        };
        assert_eq!(f.minute, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(f.hour, 1 << 6 | 1 << 10 | 1 << 14);
        assert_eq!(f.month, 1 << 1 | 1 << 12);
        assert_eq!(f.dow, 0b111110);
        assert!(f.dom_star && !f.dow_star);
        // Day of month OR day of week when neither is `*`.
        let Kind::Cron(f) = parse("0 0 13 * FRI").unwrap().kind else {
            panic!("not a cron schedule");
        };
        assert!(f.day_matches(5, 5) && f.day_matches(13, 0) && !f.day_matches(5, 0));
        assert_eq!(parse("@weekly").unwrap(), parse("0 0 * * 0").unwrap());
        assert_eq!(
            parse("@every 90.5s").unwrap().kind,
            Kind::Every(Duration::from_secs(90))
        );
        assert_eq!(
            parse("@every 10ms").unwrap().kind,
            Kind::Every(Duration::from_secs(1))
        );
        assert_eq!(
            parse("CRON_TZ=Asia/Tokyo 0 9 * * *")
                .unwrap()
                .zone
                .as_deref(),
            Some("Asia/Tokyo")
        );
    }
}
