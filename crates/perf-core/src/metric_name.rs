//! The one rule for metric names and prefixes, so every crate accepts and refuses the same.

use crate::BuildError;

/// Checks that `prefix` can start a Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`
/// (the exposition format's rule; a recorder other than Prometheus accepts these too).
///
/// # Errors
///
/// A [`BuildError`] on `field` for an empty prefix or one with another character.
///
/// ```
/// use perf_core::metric_name::validate_prefix;
///
/// assert!(validate_prefix("metrics_prefix", "pocwhisp_http").is_ok());
/// let error = validate_prefix("metrics_prefix", "9lives").unwrap_err();
/// assert_eq!(error.field(), "metrics_prefix");
/// ```
pub fn validate_prefix(field: &'static str, prefix: &str) -> Result<(), BuildError> {
    if is_valid(prefix) {
        Ok(())
    } else {
        Err(BuildError::new(
            field,
            format!("`{prefix}` is not a metric name: it must match [a-zA-Z_:][a-zA-Z0-9_:]*"),
        ))
    }
}

fn is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_pass_and_others_fail() {
        for good in ["http", "_x", "a:b", "pocwhisp_cache2"] {
            assert!(is_valid(good), "{good}");
        }
        for bad in ["", "9lives", "a-b", "a b", "é", "a.b"] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
