//! Errors of policy parsing and ACL object validation.

/// Everything this crate refuses. Messages follow Nomad's wording, since the
/// HTTP layer returns them to clients verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// HCL or JSON syntax error in policy rules, with a one-based position.
    #[error("Failed to parse ACL Policy: At {line}:{column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The rules are well-formed HCL/JSON but do not have a policy's shape
    /// (for example a string where a list was expected).
    #[error("Failed to parse ACL Policy: {0}")]
    Decode(String),
    /// Semantically invalid rules: unknown capability, bad level, bad name.
    #[error("{0}")]
    Invalid(String),
    /// One or more validation failures of a token or policy object, rendered
    /// like Go's `multierror` (`1 error occurred:\n\t* ...\n\n`).
    #[error("{}", format_multierror(.0))]
    Validation(Vec<String>),
}

impl PolicyError {
    /// The individual messages: one for every variant except
    /// [`PolicyError::Validation`], which may hold several.
    pub fn messages(&self) -> Vec<String> {
        match self {
            PolicyError::Validation(errs) => errs.clone(),
            other => vec![other.to_string()],
        }
    }
}

fn format_multierror(errs: &[String]) -> String {
    let noun = if errs.len() == 1 {
        "error occurred"
    } else {
        "errors occurred"
    };
    let mut out = format!("{} {noun}:\n", errs.len());
    for e in errs {
        out.push_str("\t* ");
        out.push_str(e);
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multierror_format() {
        let one = PolicyError::Validation(vec!["token name too long".into()]);
        assert_eq!(
            one.to_string(),
            "1 error occurred:\n\t* token name too long\n\n"
        );
        let two = PolicyError::Validation(vec!["a".into(), "b".into()]);
        assert_eq!(two.to_string(), "2 errors occurred:\n\t* a\n\t* b\n\n");
        assert_eq!(two.messages(), vec!["a", "b"]);
    }
}
