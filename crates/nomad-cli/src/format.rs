//! Output helpers shaped like Nomad's: columnize tables and `k = v` blocks, times, ID prefixes.

use chrono::{Local, Offset, TimeZone};

/// Width of a short ID.
pub const SHORT_ID: usize = 8;
/// Width of a full UUID.
pub const FULL_ID: usize = 36;

/// Aligns `|`-separated rows with `glue` between columns, as ryanuber/columnize does: cells are
/// trimmed, empty cells become `empty`, the last cell of a row is not padded.
pub fn columnize(rows: &[String], glue: &str, empty: &str) -> String {
    let split = |row: &String| -> Vec<String> {
        row.split('|')
            .map(|c| {
                let c = c.trim();
                if c.is_empty() {
                    empty.to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let cells: Vec<Vec<String>> = rows.iter().map(split).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            let l = c.chars().count();
            if widths.len() <= i {
                widths.push(l);
            } else if widths[i] < l {
                widths[i] = l;
            }
        }
    }
    let mut out = String::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if i == row.len() - 1 {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count()));
                out.push_str(glue);
            }
        }
        out.push('\n');
    }
    out.pop();
    out
}

/// A `Key = value` block (Nomad `formatKV`).
pub fn format_kv(rows: &[String]) -> String {
    columnize(rows, " = ", "<none>")
}

/// A table with two-space gaps (Nomad `formatList`).
pub fn format_list(rows: &[String]) -> String {
    columnize(rows, "  ", "<none>")
}

/// A table that keeps empty cells empty (Nomad `formatListWithSpaces`).
pub fn format_list_with_spaces(rows: &[String]) -> String {
    columnize(rows, "  ", "")
}

/// The first `n` bytes of an ID (whole string when shorter).
pub fn limit(s: &str, n: usize) -> &str {
    if s.len() < n {
        return s;
    }
    s.get(..n).unwrap_or(s)
}

/// Formats unix nanoseconds in the local zone as `2006-01-02T15:04:05Z07:00`; empty for times
/// before the epoch's first second, as Nomad prints nothing for zero times.
pub fn format_unix_nanos(nanos: i64) -> String {
    if nanos.div_euclid(1_000_000_000) < 1 {
        return String::new();
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    match Local.timestamp_opt(secs, sub).single() {
        Some(t) => {
            let off = t.offset().fix().local_minus_utc();
            if off == 0 {
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            } else {
                t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
            }
        }
        None => String::new(),
    }
}

/// Current time formatted like [`format_unix_nanos`].
pub fn now_formatted() -> String {
    format_unix_nanos(now_nanos())
}

/// Current unix time in nanoseconds.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// An RFC3339 time (as in `TaskState.StartedAt`) formatted, or `N/A` when missing or zero.
pub fn format_task_time(t: Option<&str>) -> String {
    match t {
        // Go's zero time; parsing it would not fit in i64 nanoseconds.
        Some(s) if !s.is_empty() && !s.starts_with("0001-") => {
            match nomad_structs::parse_rfc3339_nanos(s) {
                Some(n) => format_unix_nanos(n),
                None => "N/A".to_string(),
            }
        }
        _ => "N/A".to_string(),
    }
}

/// Human time difference between `first` and `now` (unix ns): the two largest non-zero units of
/// s/m/h/d/mo/y, then `ago` or `from now` (Nomad `prettyTimeDiff`). Zero `first` gives "".
pub fn pretty_time_diff(first: i64, now: i64) -> String {
    if first == 0 {
        return String::new();
    }
    let round = |n: i64| (n + 500_000_000).div_euclid(1_000_000_000);
    let (a, b) = (round(first), round(now));
    let (mut u, suffix) = if b >= a {
        ((b - a) as u64, "ago")
    } else {
        ((a - b) as u64, "from now")
    };
    let mut parts: Vec<String> = Vec::new();
    let secs = u % 60;
    if secs > 0 {
        parts.push(format!("{secs}s"));
    }
    u /= 60;
    if u > 0 {
        let mins = u % 60;
        if mins > 0 {
            parts.push(format!("{mins}m"));
        }
        u /= 60;
        if u > 0 {
            let hrs = u % 24;
            if hrs > 0 {
                parts.push(format!("{hrs}h"));
            }
            u /= 24;
        }
        if u > 0 {
            let days = u % 30;
            if days > 0 {
                parts.push(format!("{days}d"));
            }
            u /= 30;
        }
        if u > 0 {
            let months = u % 12;
            if months > 0 {
                parts.push(format!("{months}mo"));
            }
            u /= 12;
        }
        if u > 0 {
            parts.push(format!("{u}y"));
        }
    }
    if parts.is_empty() {
        return format!("0s {suffix}");
    }
    let top: Vec<String> = parts.iter().rev().take(2).cloned().collect();
    format!("{} {suffix}", top.concat())
}

/// Drops a trailing odd hex character so a UUID prefix has whole bytes (Nomad `sanitizeUUIDPrefix`).
pub fn sanitize_uuid_prefix(prefix: &str) -> String {
    let hyphens = prefix.matches('-').count();
    let rem = (prefix.len() - hyphens) % 2;
    prefix
        .get(..prefix.len() - rem)
        .unwrap_or(prefix)
        .to_string()
}

/// Bytes in IEC units with one decimal below 10 (go-humanize `IBytes`: "256 MiB", "1.5 GiB").
pub fn ibytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let e = ((n as f64).ln() / 1024f64.ln()).floor() as usize;
    let e = e.min(units.len() - 1);
    let val = ((n as f64 / 1024f64.powi(e as i32)) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", units[e])
    } else {
        format!("{val:.0} {}", units[e])
    }
}

/// Pretty JSON with 4-space indent, as Nomad's CLI prints it.
pub fn json_pretty<T: serde::Serialize>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if v.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// `{"Job": {...}}` with the job's fields in struct order, 4-space indent.
pub fn job_wrapped_json(job: &nomad_structs::Job) -> String {
    #[derive(serde::Serialize)]
    struct Wrapped<'a> {
        #[serde(rename = "Job")]
        job: &'a nomad_structs::Job,
    }
    json_pretty(&Wrapped { job })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kv_alignment() {
        let out = format_kv(&rows(&["ID|example", "Submit Date|x", "Datacenters|"]));
        assert_eq!(
            out,
            "ID          = example\nSubmit Date = x\nDatacenters = <none>"
        );
    }

    #[test]
    fn list_alignment() {
        let out = format_list(&rows(&["ID|Type|Priority", "example|service|50"]));
        assert_eq!(out, "ID       Type     Priority\nexample  service  50");
        let out = format_list_with_spaces(&rows(&["a|b|c", "|x|"]));
        assert_eq!(out, "a  b  c\n   x  ");
    }

    #[test]
    fn relative_times() {
        let s = 1_000_000_000_000_000_000i64;
        assert_eq!(pretty_time_diff(s, s + 303_000_000_000), "5m3s ago");
        assert_eq!(pretty_time_diff(s, s + 200_000_000), "0s ago");
        assert_eq!(pretty_time_diff(s, s + 3_723_000_000_000), "1h2m ago");
        assert_eq!(pretty_time_diff(s, s + 3_605_000_000_000), "1h5s ago");
        assert_eq!(pretty_time_diff(s + 10_000_000_000, s), "10s from now");
        assert_eq!(
            pretty_time_diff(s, s + 86_400_000_000_000 * 45),
            "1mo15d ago"
        );
        assert_eq!(pretty_time_diff(0, s), "");
    }

    #[test]
    fn uuid_prefix() {
        assert_eq!(sanitize_uuid_prefix("abc"), "ab");
        assert_eq!(sanitize_uuid_prefix("abcd"), "abcd");
        assert_eq!(sanitize_uuid_prefix("abcdefgh-1"), "abcdefgh-");
        assert_eq!(sanitize_uuid_prefix("abcdefgh-12"), "abcdefgh-12");
    }

    #[test]
    fn bytes_iec() {
        assert_eq!(ibytes(256 * 1024 * 1024), "256 MiB");
        assert_eq!(ibytes(300 * 1024 * 1024), "300 MiB");
        assert_eq!(ibytes(1536 * 1024 * 1024), "1.5 GiB");
        assert_eq!(ibytes(5), "5 B");
    }

    #[test]
    fn limits() {
        assert_eq!(limit("1234567890", 8), "12345678");
        assert_eq!(limit("1234", 8), "1234");
    }

    #[test]
    fn times() {
        assert_eq!(format_unix_nanos(0), "");
        assert!(format_unix_nanos(1_700_000_000_000_000_000).starts_with("2023-11-1"));
        assert_eq!(format_task_time(None), "N/A");
    }
}
