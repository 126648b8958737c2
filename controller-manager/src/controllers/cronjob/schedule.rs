//! When cron schedules fire. Parsing is [`keelson_apimachinery::cron`] (robfig/cron's
//! `ParseStandard`): five fields
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
use keelson_apimachinery::cron::{self, has, Fields, Kind};

/// Searches give up this many years ahead or back (as robfig does), so that a schedule
/// that never matches (`0 0 30 2 *`) ends.
const SEARCH_YEARS: i16 = 5;

#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    /// From a `TZ=`/`CRON_TZ=` prefix; it wins over the zone the caller passes.
    zone: Option<TimeZone>,
}

/// Parse a schedule ([`cron::parse`]) and look up the zone of its `TZ=` prefix.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let parsed = cron::parse(spec.trim())?;
    let zone = match parsed.zone {
        Some(name) => {
            Some(TimeZone::get(&name).map_err(|e| format!("provided bad location {name}: {e}"))?)
        }
        None => None,
    };
    Ok(Schedule {
        kind: parsed.kind,
        zone,
    })
}

fn day_matches(f: &Fields, dt: DateTime) -> bool {
    f.day_matches(dt.day(), dt.weekday().to_sunday_zero_offset())
}

/// The first matching wall time at or after `dt` (whole minutes), within the
/// search window.
fn next_wall(f: &Fields, mut dt: DateTime) -> Option<DateTime> {
    let limit = dt.year() + SEARCH_YEARS;
    while dt.year() <= limit {
        dt = if !has(f.month, dt.month()) {
            dt.first_of_month()
                .date()
                .at(0, 0, 0, 0)
                .checked_add(1.month())
                .ok()?
        } else if !day_matches(f, dt) {
            dt.date().tomorrow().ok()?.at(0, 0, 0, 0)
        } else if !has(f.hour, dt.hour()) {
            dt.date()
                .at(dt.hour(), 0, 0, 0)
                .checked_add(1.hour())
                .ok()?
        } else if !has(f.minute, dt.minute()) {
            dt.checked_add(1.minute()).ok()?
        } else {
            return Some(dt);
        };
    }
    None
}

/// The last matching wall time at or before `dt` (whole minutes).
fn prev_wall(f: &Fields, mut dt: DateTime) -> Option<DateTime> {
    let limit = dt.year() - SEARCH_YEARS;
    while dt.year() >= limit {
        let back_from = if !has(f.month, dt.month()) {
            dt.first_of_month().date().at(0, 0, 0, 0)
        } else if !day_matches(f, dt) {
            dt.date().at(0, 0, 0, 0)
        } else if !has(f.hour, dt.hour()) {
            dt.date().at(dt.hour(), 0, 0, 0)
        } else if !has(f.minute, dt.minute()) {
            dt
        } else {
            return Some(dt);
        };
        dt = back_from.checked_sub(1.minute()).ok()?;
    }
    None
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
                    dt = next_wall(f, dt)?;
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
                    let Some(wall) = prev_wall(f, dt) else {
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
