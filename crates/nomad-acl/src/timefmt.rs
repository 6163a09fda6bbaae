//! RFC 3339 timestamps and Go duration strings, the way Nomad's ACL JSON
//! carries them. Pure functions; the caller supplies "now".

/// Nanoseconds since the Unix epoch of an RFC 3339 timestamp
/// (`2024-05-01T10:00:00.5Z`, `...+02:00`). `i128` because Go's zero time
/// (`0001-01-01T00:00:00Z`) does not fit in `i64` nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = num(0, 4)?;
    let month = num(5, 7)?;
    let day = num(8, 10)?;
    let hour = num(11, 13)?;
    let minute = num(14, 16)?;
    let second = num(17, 19)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut idx = 19;
    let mut frac_nanos: i128 = 0;
    if b.get(idx) == Some(&b'.') {
        idx += 1;
        let start = idx;
        while idx < b.len() && b[idx].is_ascii_digit() {
            idx += 1;
        }
        let digits = &s[start..idx];
        if digits.is_empty() {
            return None;
        }
        let mut scaled = String::from(&digits[..digits.len().min(9)]);
        while scaled.len() < 9 {
            scaled.push('0');
        }
        frac_nanos = scaled.parse().ok()?;
    }
    let offset_secs: i64 = match s.get(idx..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let h: i64 = tz.get(1..3)?.parse().ok()?;
            let m: i64 = tz.get(4..6)?.parse().ok()?;
            if tz.as_bytes()[3] != b':' {
                return None;
            }
            let off = h * 3600 + m * 60;
            if tz.starts_with('-') {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs as i128 * 1_000_000_000 + frac_nanos)
}

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`) in nanoseconds.
pub fn go_zero_time_nanos() -> i128 {
    days_from_civil(1, 1, 1) as i128 * 86_400 * 1_000_000_000
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed, UTC (Go's
/// `time.RFC3339Nano` of a UTC time).
pub fn format_rfc3339(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

// Howard Hinnant's days-from-civil algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Go's `time.Duration.String()` (`1h0m0s`, `1m30s`, `1.5s`, `300ms`, `0s`).
pub fn format_go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let frac = |value: u64, unit: u64| -> String {
        let whole = value / unit;
        let rem = value % unit;
        if rem == 0 {
            whole.to_string()
        } else {
            let width = unit.ilog10() as usize;
            let f = format!("{rem:0width$}");
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        out.push_str(&format!("{u}ns"));
    } else if u < 1_000_000 {
        out.push_str(&frac(u, 1_000));
        out.push_str("µs");
    } else if u < 1_000_000_000 {
        out.push_str(&frac(u, 1_000_000));
        out.push_str("ms");
    } else {
        let hours = u / 3_600_000_000_000;
        let minutes = (u / 60_000_000_000) % 60;
        let sec_part = u % 60_000_000_000;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&frac(sec_part, 1_000_000_000));
        out.push('s');
    }
    out
}

/// Go's `time.ParseDuration` (`"1h30m"`, `"1.5s"`, `"300ms"`, `"0"`).
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * unit;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let n = total.round() as i64;
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_roundtrip() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0i64),
            ("2024-02-29T12:34:56Z", 1_709_210_096_000_000_000),
            ("2024-02-29T12:34:56.5Z", 1_709_210_096_500_000_000),
            ("1969-12-31T23:59:59.999999999Z", -1),
        ];
        for (s, n) in cases {
            assert_eq!(parse_rfc3339(s), Some(n as i128), "{s}");
            assert_eq!(format_rfc3339(n), s);
        }
        assert_eq!(
            parse_rfc3339("2024-02-29T14:34:56+02:00"),
            Some(1_709_210_096_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("0001-01-01T00:00:00Z"),
            Some(go_zero_time_nanos())
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:34:56",
            "x024-02-29T12:34:56Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        let cases = [
            (0i64, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (86_400_000_000_000, "24h0m0s"),
            (-60_000_000_000, "-1m0s"),
        ];
        for (n, s) in cases {
            assert_eq!(format_go_duration(n), s);
            assert_eq!(parse_go_duration(s), Some(n), "{s}");
        }
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5d"), None);
    }
}
