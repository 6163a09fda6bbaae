//! The canonical model of nomad-rs: jobs, allocations, nodes and evaluations in Nomad's JSON shape.
//!
//! Invariants: this crate does no IO, reads no clock and makes no IDs; times and IDs come in as
//! parameters. Serde attributes here are the single place where Nomad's wire spellings (`ID`,
//! PascalCase, nanosecond durations) live.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod canonicalize;
pub mod duration;
pub mod eval;
pub mod job;
pub mod node;
pub mod requests;
pub mod scaling;
pub mod serde_util;
pub mod summary;
pub mod validate;
pub mod variable;

pub use alloc::*;
pub use canonicalize::canonicalize_job;
pub use eval::*;
pub use job::*;
pub use node::*;
pub use requests::*;
pub use scaling::*;
pub use summary::*;
pub use validate::{multierror, validate_job};
pub use variable::*;

/// The version this agent reports (`nomad.version`, `nomad version`).
pub const NOMAD_VERSION: &str = "2.0.6";

/// Formats unix nanoseconds as RFC3339 with nanoseconds in UTC, as Go's `time.RFC3339Nano`.
pub fn rfc3339_nanos(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    );
    if nanos != 0 {
        let f = format!("{nanos:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses the RFC3339 strings this crate writes (and Go's, with offsets) back into unix nanoseconds.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        let padded = format!("{frac:0<9}");
        nanos = padded.get(..9)?.parse().ok()?;
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    Some(secs * 1_000_000_000 + nanos)
}

// Howard Hinnant's civil-date algorithms.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = 1_700_000_000_123_456_789;
        let s = rfc3339_nanos(t);
        assert_eq!(s, "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse_rfc3339_nanos(&s), Some(t));
        assert_eq!(
            parse_rfc3339_nanos("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000_000)
        );
    }

    #[test]
    fn job_json_shape() {
        let j: Job = serde_json::from_str(
            r#"{"ID":"x","Priority":null,"TaskGroups":[{"Name":"g","Count":null,"Tasks":[{"Name":"t","Driver":"raw_exec","Config":{"command":"/bin/date"}}]}],"Datacenters":null,"Meta":null}"#,
        )
        .unwrap();
        assert_eq!(j.id, "x");
        assert_eq!(j.task_groups[0].tasks[0].driver, "raw_exec");
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["ID"], "x");
        assert!(v.get("Id").is_none());
    }
}
