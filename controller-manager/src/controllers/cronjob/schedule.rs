//! Cron schedules as Kubernetes reads them (robfig/cron's `ParseStandard`): five fields
//! (minute, hour, day of month, month, day of week) with `*`, `?`, lists, ranges, steps
//! and names (`JAN`..`DEC`, `SUN`..`SAT`); the descriptors `@yearly`/`@annually`,
//! `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly` and `@every <duration>`; and
//! an optional `TZ=<zone>` or `CRON_TZ=<zone>` prefix.
//!
//! Times are matched on a time zone's wall clock. A wall time skipped by a daylight
//! saving jump runs at the shifted time; a wall time that occurs twice runs once.

use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Searches give up this many years ahead or back (as robfig does), so that a schedule
/// that never matches (`0 0 30 2 *`) ends.
const SEARCH_YEARS: i16 = 5;

#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    /// From a `TZ=`/`CRON_TZ=` prefix; it wins over the zone the caller passes.
    zone: Option<TimeZone>,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Fields),
    /// `@every`: a constant delay, whole seconds, at least one.
    Every(Duration),
}

/// One bit per allowed value. `*_star` records a `*` or `?` field, which switches the
/// day-of-month/day-of-week rule from "either matches" to "both match".
#[derive(Debug, Clone)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
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

/// Parse a schedule; the error reads like robfig's.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let mut spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let (prefix, rest) = spec
            .split_once(' ')
            .ok_or_else(|| format!("provided bad location {spec}"))?;
        let name = &prefix[prefix.find('=').unwrap_or(0) + 1..];
        zone = Some(TimeZone::get(name).map_err(|e| format!("provided bad location {name}: {e}"))?);
        spec = rest.trim();
    }
    let kind = match spec {
        "@yearly" | "@annually" => cron("0 0 1 1 *")?,
        "@monthly" => cron("0 0 1 * *")?,
        "@weekly" => cron("0 0 * * 0")?,
        "@daily" | "@midnight" => cron("0 0 * * *")?,
        "@hourly" => cron("0 * * * *")?,
        _ => match spec.strip_prefix("@every ") {
            Some(d) => {
                let d = parse_go_duration(d.trim())
                    .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                // robfig: at least one second, and whole seconds.
                Kind::Every(Duration::from_secs(d.as_secs().max(1)))
            }
            None if spec.starts_with('@') => {
                return Err(format!("unrecognized descriptor: {spec}"))
            }
            None => cron(spec)?,
        },
    };
    Ok(Schedule { kind, zone })
}

fn cron(spec: &str) -> Result<Kind, String> {
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {spec}",
            fields.len()
        ));
    }
    let (minute, _) = parse_field(fields[0], &MINUTE)?;
    let (hour, _) = parse_field(fields[1], &HOUR)?;
    let (dom, dom_star) = parse_field(fields[2], &DOM)?;
    let (month, _) = parse_field(fields[3], &MONTH)?;
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

/// A comma-separated list of `*`, `?`, `n`, `a-b`, each with an optional `/step`.
fn parse_field(field: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        let (range, step) = match expr.split_once('/') {
            Some((r, s)) if !s.contains('/') => (r, Some(number(s)?)),
            Some(_) => return Err(format!("too many slashes: {expr}")),
            None => (expr, None),
        };
        let (start, mut end, mut is_star) = if range == "*" || range == "?" {
            (b.min, b.max, true)
        } else {
            match range.split_once('-') {
                None => {
                    let v = value(range, b)?;
                    (v, v, false)
                }
                Some((lo, hi)) if !hi.contains('-') => (value(lo, b)?, value(hi, b)?, false),
                Some(_) => return Err(format!("too many hyphens: {expr}")),
            }
        };
        let step = match step {
            None => 1,
            Some(s) => {
                // `n/step` means from n to the maximum.
                if !range.contains('-') {
                    end = b.max;
                }
                if s > 1 {
                    is_star = false;
                }
                s
            }
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
        star |= is_star;
        for v in (start..=end).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, star))
}

fn value(expr: &str, b: &Bounds) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(i as u32 + b.min),
        None => number(expr),
    }
}

fn number(expr: &str) -> Result<u32, String> {
    expr.parse::<u32>()
        .map_err(|_| format!("failed to parse int from {expr}"))
}

/// Go's `time.ParseDuration` for the non-negative durations `@every` takes.
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().map_err(|_| invalid())?;
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
    Ok(Duration::from_secs_f64(total))
}

fn has(bits: u64, v: impl Into<i64>) -> bool {
    let v = v.into();
    (0..64).contains(&v) && bits & (1 << v) != 0
}

impl Fields {
    fn day_matches(&self, dt: DateTime) -> bool {
        let dom = has(self.dom, dt.day());
        let dow = has(self.dow, dt.weekday().to_sunday_zero_offset());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching wall time at or after `dt` (whole minutes), within the
    /// search window.
    fn next_wall(&self, mut dt: DateTime) -> Option<DateTime> {
        let limit = dt.year() + SEARCH_YEARS;
        while dt.year() <= limit {
            dt = if !has(self.month, dt.month()) {
                dt.first_of_month()
                    .date()
                    .at(0, 0, 0, 0)
                    .checked_add(1.month())
                    .ok()?
            } else if !self.day_matches(dt) {
                dt.date().tomorrow().ok()?.at(0, 0, 0, 0)
            } else if !has(self.hour, dt.hour()) {
                dt.date()
                    .at(dt.hour(), 0, 0, 0)
                    .checked_add(1.hour())
                    .ok()?
            } else if !has(self.minute, dt.minute()) {
                dt.checked_add(1.minute()).ok()?
            } else {
                return Some(dt);
            };
        }
        None
    }

    /// The last matching wall time at or before `dt` (whole minutes).
    fn prev_wall(&self, mut dt: DateTime) -> Option<DateTime> {
        let limit = dt.year() - SEARCH_YEARS;
        while dt.year() >= limit {
            let back_from = if !has(self.month, dt.month()) {
                dt.first_of_month().date().at(0, 0, 0, 0)
            } else if !self.day_matches(dt) {
                dt.date().at(0, 0, 0, 0)
            } else if !has(self.hour, dt.hour()) {
                dt.date().at(dt.hour(), 0, 0, 0)
            } else if !has(self.minute, dt.minute()) {
                dt
            } else {
                return Some(dt);
            };
            dt = back_from.checked_sub(1.minute()).ok()?;
        }
        None
    }
}

fn to_timestamp(zone: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    zone.to_ambiguous_timestamp(dt).compatible().ok()
}

fn minute_floor(zone: &TimeZone, t: Timestamp) -> DateTime {
    let dt = zone.to_datetime(t);
    dt.date().at(dt.hour(), dt.minute(), 0, 0)
}

impl Schedule {
    /// The zone of a `TZ=` prefix, else `zone`.
    fn zone<'a>(&'a self, zone: &'a TimeZone) -> &'a TimeZone {
        self.zone.as_ref().unwrap_or(zone)
    }

    /// The first activation strictly after `after`; `None` if there is none within
    /// five years.
    pub fn next(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(d) => {
                // robfig: `after` truncated to the second, plus the delay.
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                whole.checked_add(*d).ok()
            }
            Kind::Cron(f) => {
                let zone = self.zone(zone);
                let mut dt = minute_floor(zone, after).checked_add(1.minute()).ok()?;
                loop {
                    dt = f.next_wall(dt)?;
                    match to_timestamp(zone, dt) {
                        Some(t) if t > after => return Some(t),
                        // The earlier of a repeated hour: keep going.
                        _ => dt = dt.checked_add(1.minute()).ok()?,
                    }
                }
            }
        }
    }

    /// The latest activation after `earliest` and at or before `now`, and how many
    /// activations fell in that window (counting stops at 101: "too many").
    pub fn most_recent(
        &self,
        earliest: Timestamp,
        now: Timestamp,
        zone: &TimeZone,
    ) -> Result<(Option<Timestamp>, usize), String> {
        let Some(first) = self.next(earliest, zone) else {
            return Err("no activation time within five years".into());
        };
        if first > now {
            return Ok((None, 0));
        }
        match &self.kind {
            Kind::Every(d) => {
                let elapsed = Duration::try_from(now - first).unwrap_or_default();
                let n = elapsed.as_secs() / d.as_secs().max(1);
                let recent = first
                    .checked_add(Duration::from_secs(n * d.as_secs()))
                    .map_err(|e| e.to_string())?;
                Ok((Some(recent), (n as usize).saturating_add(1).min(101)))
            }
            Kind::Cron(f) => {
                let zone = self.zone(zone);
                let mut dt = minute_floor(zone, now);
                let recent = loop {
                    let Some(wall) = f.prev_wall(dt) else {
                        break first;
                    };
                    match to_timestamp(zone, wall) {
                        Some(t) if t <= now => break t.max(first),
                        _ => dt = wall.checked_sub(1.minute()).map_err(|e| e.to_string())?,
                    }
                };
                let mut missed = 1;
                let mut t = first;
                while missed <= 100 {
                    match self.next(t, zone) {
                        Some(n) if n <= now => {
                            missed += 1;
                            t = n;
                        }
                        _ => break,
                    }
                }
                Ok((Some(recent), missed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str, zone: &str) -> String {
        parse(spec)
            .unwrap()
            .next(ts(after), &TimeZone::get(zone).unwrap())
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn next_times() {
        let utc = "UTC";
        assert_eq!(
            next("*/1 * * * *", "2024-01-01T10:00:30Z", utc),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:00:00Z", utc),
            "2024-01-01T10:15:00Z"
        );
        assert_eq!(
            next("0 9 * * MON-FRI", "2024-01-05T10:00:00Z", utc),
            "2024-01-08T09:00:00Z"
        );
        assert_eq!(
            next("30 6-16/4 * * *", "2024-01-01T07:00:00Z", utc),
            "2024-01-01T10:30:00Z"
        );
        assert_eq!(
            next("0 0 29 FEB *", "2024-03-01T00:00:00Z", utc),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2024-01-31T12:00:00Z", utc),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2024-01-01T00:00:00Z", utc),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2024-06-01T00:00:00Z", utc),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@every 90s", "2024-01-01T00:00:00.5Z", utc),
            "2024-01-01T00:01:30Z"
        );
        // Day of month OR day of week when neither is `*`.
        assert_eq!(
            next("0 0 13 * FRI", "2024-01-01T00:00:00Z", utc),
            "2024-01-05T00:00:00Z"
        );
        // Never matches: no time within the window.
        assert_eq!(next("0 0 30 2 *", "2024-01-01T00:00:00Z", utc), "");
    }

    #[test]
    fn time_zones() {
        // 09:00 in New York is 14:00 UTC in winter, 13:00 in summer.
        assert_eq!(
            next("0 9 * * *", "2024-01-01T00:00:00Z", "America/New_York"),
            "2024-01-01T14:00:00Z"
        );
        assert_eq!(
            next("0 9 * * *", "2024-07-01T00:00:00Z", "America/New_York"),
            "2024-07-01T13:00:00Z"
        );
        // The prefix wins over the zone passed in.
        assert_eq!(
            next(
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                "2024-01-01T00:00:00Z",
                "UTC"
            ),
            "2024-01-02T00:00:00Z"
        );
        // 02:30 does not exist on 2024-03-10 in New York: it runs at 03:30 EDT.
        assert_eq!(
            next("30 2 * * *", "2024-03-10T05:00:00Z", "America/New_York"),
            "2024-03-10T07:30:00Z"
        );
        assert!(parse("TZ=Nowhere/Special * * * * *").is_err());
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* * 0 * *",
            "* * * * 7",
            "x * * * *",
            "@fortnightly",
            "1-2-3 * * * *",
            "*/0 * * * *",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn most_recent_and_missed() {
        let s = parse("*/5 * * * *").unwrap();
        let utc = TimeZone::UTC;
        let (recent, missed) = s
            .most_recent(ts("2024-01-01T10:00:00Z"), ts("2024-01-01T10:17:00Z"), &utc)
            .unwrap();
        assert_eq!(recent, Some(ts("2024-01-01T10:15:00Z")));
        assert_eq!(missed, 3);
        let (recent, missed) = s
            .most_recent(ts("2024-01-01T10:00:00Z"), ts("2024-01-01T10:04:59Z"), &utc)
            .unwrap();
        assert_eq!((recent, missed), (None, 0));
        // Days late: the count stops at 101 and the latest time is still found.
        let (recent, missed) = s
            .most_recent(ts("2024-01-01T10:00:00Z"), ts("2024-01-03T10:02:00Z"), &utc)
            .unwrap();
        assert_eq!(recent, Some(ts("2024-01-03T10:00:00Z")));
        assert_eq!(missed, 101);
        let every = parse("@every 1h").unwrap();
        let (recent, missed) = every
            .most_recent(ts("2024-01-01T10:00:00Z"), ts("2024-01-01T13:30:00Z"), &utc)
            .unwrap();
        assert_eq!((recent, missed), (Some(ts("2024-01-01T13:00:00Z")), 3));
        assert!(parse("0 0 30 2 *")
            .unwrap()
            .most_recent(ts("2024-01-01T00:00:00Z"), ts("2024-06-01T00:00:00Z"), &utc)
            .is_err());
    }
}
