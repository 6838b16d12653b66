//! Timestamps as Docker writes them: RFC 3339 with nanoseconds, in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// `2026-11-28T00:13:12.123456789Z`, Go's `time.RFC3339Nano` (trailing zeros kept, as the
/// json-file log driver writes them).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Now as `rfc3339_nanos`.
pub fn now_rfc3339() -> String {
    rfc3339_nanos(SystemTime::now())
}

/// Parse an RFC 3339 timestamp (any precision) or Unix seconds with an optional fraction
/// (`1700000000`, `1700000000.5`), as `--since`/`--until` accept.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Some(t);
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: u64 = secs.parse().ok()?;
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits = &frac[..frac.len().min(9)];
        digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
    };
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// The Go zero time, which Docker shows for "never" (`FinishedAt` of a running container).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
