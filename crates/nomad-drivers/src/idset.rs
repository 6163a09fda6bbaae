//! `denied_host_uids` / `denied_host_gids` of the raw_exec and exec plugin configs: sets of
//! host ids written as `"0,10-20"`, and the check that a task's user is outside them.

use std::fmt;

/// A set of ids as inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdSet {
    ranges: Vec<(u32, u32)>,
}

impl IdSet {
    /// Parses `"0,10-20"` (an empty string is the empty set). `what` names the option in
    /// errors, e.g. `denied_host_uids`.
    pub fn parse(what: &str, text: &str) -> Result<IdSet, String> {
        let bad = |part: &str, why: &str| format!("invalid {what} value {text:?}: {part:?} {why}");
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(bad(part, "is empty"));
            }
            let id = |s: &str| {
                s.trim()
                    .parse::<u32>()
                    .map_err(|_| bad(part, "is not an id or a range of ids"))
            };
            let range = match part.split_once('-') {
                None => (id(part)?, id(part)?),
                Some((lo, hi)) => {
                    let (lo, hi) = (id(lo)?, id(hi)?);
                    if lo > hi {
                        return Err(bad(part, "has its lower bound above its upper bound"));
                    }
                    (lo, hi)
                }
            };
            ranges.push(range);
        }
        Ok(IdSet { ranges })
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        self.ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&id))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl fmt::Display for IdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Nomad's check of a task user against the denied host ids: the uid first, then every group
/// the user belongs to.
pub fn check_ids(
    uid: u32,
    gids: &[u32],
    denied_uids: &IdSet,
    denied_gids: &IdSet,
) -> Result<(), String> {
    if denied_uids.contains(uid) {
        return Err(format!("running as uid {uid} is disallowed"));
    }
    if let Some(g) = gids.iter().find(|g| denied_gids.contains(**g)) {
        return Err(format!("running as gid {g} is disallowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_ranges() {
        let s = IdSet::parse("denied_host_uids", "0, 10-20,1000").unwrap();
        assert!(s.contains(0) && s.contains(10) && s.contains(15) && s.contains(20));
        assert!(!s.contains(9) && !s.contains(21) && s.contains(1000));
        assert_eq!(s.to_string(), "0,10-20,1000");
        assert!(IdSet::parse("x", "").unwrap().is_empty());
        assert!(IdSet::parse("x", "  ").unwrap().is_empty());
    }

    #[test]
    fn bad_values_name_the_option_and_the_part() {
        let e = IdSet::parse("denied_host_uids", "0,abc").unwrap_err();
        assert_eq!(
            e,
            "invalid denied_host_uids value \"0,abc\": \"abc\" is not an id or a range of ids"
        );
        let e = IdSet::parse("denied_host_gids", "20-10").unwrap_err();
        assert!(e.contains("lower bound above"), "{e}");
        assert!(IdSet::parse("x", "1,,2").is_err());
        assert!(IdSet::parse("x", "-5").is_err());
    }

    #[test]
    fn checks_uid_then_groups() {
        let uids = IdSet::parse("u", "0").unwrap();
        let gids = IdSet::parse("g", "100-200").unwrap();
        assert_eq!(
            check_ids(0, &[], &uids, &gids).unwrap_err(),
            "running as uid 0 is disallowed"
        );
        assert_eq!(
            check_ids(1000, &[1000, 150], &uids, &gids).unwrap_err(),
            "running as gid 150 is disallowed"
        );
        assert!(check_ids(1000, &[1000], &uids, &gids).is_ok());
    }
}
