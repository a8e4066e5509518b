//! The error every builder returns for a setting that cannot work.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// A configuration value that cannot work; returned by builders, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    field: Cow<'static, str>,
    reason: Cow<'static, str>,
}

impl BuildError {
    /// `field` is invalid because of `reason` (which reads after the field's name: "must be
    /// at least 1").
    pub fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        BuildError {
            field: Cow::Borrowed(field),
            reason: reason.into(),
        }
    }

    /// The same error seen from the configuration that holds this one under `parent`: the
    /// field becomes `parent.field`, so a composite configuration names the whole path.
    #[must_use]
    pub fn within(self, parent: &str) -> Self {
        BuildError {
            field: Cow::Owned(format!("{parent}.{}", self.field)),
            reason: self.reason,
        }
    }

    /// The configuration field at fault, as named in its configuration struct (a dotted
    /// path when a composite configuration holds it).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: `{}` {}", self.field, self.reason)
    }
}

impl Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_field_then_says_what_is_wrong() {
        let error = BuildError::new("max_keys", "must be at least 1");
        assert_eq!(error.field(), "max_keys");
        assert_eq!(
            error.to_string(),
            "invalid configuration: `max_keys` must be at least 1"
        );
        let nested = error.within("rate_limit").within("http");
        assert_eq!(nested.field(), "http.rate_limit.max_keys");
        assert_eq!(nested.reason(), "must be at least 1");
    }
}
