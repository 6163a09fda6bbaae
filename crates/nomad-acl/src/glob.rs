//! `*` glob matching for namespace, node pool, host volume and variable path
//! rules, and Nomad's "closest matching glob" rule.

/// Whether `pattern` (where `*` matches any run of characters, including
/// none) matches `name` as a whole. There is no escaping and no other
/// metacharacter.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let middle_and_last: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle_and_last.split_last() else {
        // No `*` at all: exact comparison.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(idx) => rest = &rest[idx + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// How far a matching glob is from the name: Nomad's
/// `len(name) - len(glob) + count(glob, "*")`. Smaller is closer.
pub fn glob_difference(pattern: &str, name: &str) -> i64 {
    let stars = pattern.matches('*').count();
    name.len() as i64 - pattern.len() as i64 + stars as i64
}

/// Among `patterns`, the glob matching `name` with the smallest
/// [`glob_difference`]. Ties go to the lexically smallest pattern (Nomad's
/// order among equal differences is not specified).
pub fn closest_glob<'a, I>(patterns: I, name: &str) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    patterns
        .into_iter()
        .filter(|p| glob_match(p, name))
        .min_by(|a, b| {
            glob_difference(a, name)
                .cmp(&glob_difference(b, name))
                .then_with(|| a.cmp(b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_table() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("prod-*", "prod-api", true),
            ("prod-*", "prod-", true),
            ("prod-*", "prod", false),
            ("prod-*", "xprod-api", false),
            ("*-prod", "api-prod", true),
            ("*-prod", "api-prod-x", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*web*", "my-web-1", true),
            ("default", "default", true),
            ("default", "default2", false),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_match(pattern, name), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn closest_prefers_more_specific() {
        let globs = ["*", "prod-*", "prod-api-*"];
        assert_eq!(closest_glob(globs, "prod-api-1"), Some("prod-api-*"));
        assert_eq!(closest_glob(globs, "prod-web"), Some("prod-*"));
        assert_eq!(closest_glob(globs, "dev"), Some("*"));
        assert_eq!(closest_glob(["prod-*"], "dev"), None);
        // Equal distance: lexical order decides.
        assert_eq!(closest_glob(["*-b", "a-*"], "a-b"), Some("*-b"));
    }
}
