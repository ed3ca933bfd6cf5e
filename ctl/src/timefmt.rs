//! Timestamps for people and for scripts: RFC 3339 in UTC, "3s ago", and time left until a moment.
//!
//! Written by hand (civil-from-days) to keep the CLI's dependency tree small; everything here is pure
//! and takes "now" as an argument so it can be tested.

use std::time::{SystemTime, UNIX_EPOCH};

use slicebed_proto::prost_types::Timestamp;

use crate::quantity::format_duration_short;

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC with second precision, e.g. `2024-05-01T12:00:03Z`; None for an unset timestamp.
pub fn rfc3339(ts: Option<&Timestamp>) -> Option<String> {
    ts.map(|t| rfc3339_secs(t.seconds))
}

/// RFC 3339 in UTC for seconds since the epoch.
pub fn rfc3339_secs(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// "3s ago", "5m ago", "never" — how long ago `ts` was.
pub fn ago(ts: Option<&Timestamp>, now: i64) -> String {
    match ts {
        None => "never".into(),
        Some(t) if t.seconds >= now => "just now".into(),
        Some(t) => format!("{} ago", format_duration_short(now - t.seconds)),
    }
}

/// Time left until `ts`: "6d23h", or "expired".
pub fn left(ts: Option<&Timestamp>, now: i64) -> String {
    match ts {
        None => "-".into(),
        Some(t) if t.seconds <= now => "expired".into(),
        Some(t) => format_duration_short(t.seconds - now),
    }
}

/// Howard Hinnant's days-to-civil algorithm: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_secs(1_714_564_803), "2024-05-01T12:00:03Z");
        assert_eq!(rfc3339_secs(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(None), None);
    }

    #[test]
    fn relative_times() {
        assert_eq!(ago(Some(&ts(97)), 100), "3s ago");
        assert_eq!(ago(None, 100), "never");
        assert_eq!(ago(Some(&ts(101)), 100), "just now");
        assert_eq!(left(Some(&ts(7 * 86_400 - 60)), 0), "6d23h");
        assert_eq!(left(Some(&ts(5)), 10), "expired");
    }
}
