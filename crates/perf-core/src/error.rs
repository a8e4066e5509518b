//! The error every builder returns for a setting that cannot work.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// A configuration value that cannot work; returned by builders, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    field: &'static str,
    reason: Cow<'static, str>,
}

impl BuildError {
    /// `field` is invalid because of `reason` (which reads after the field's name: "must be
    /// at least 1").
    pub fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        BuildError {
            field,
            reason: reason.into(),
        }
    }

    /// The configuration field at fault, as named in its configuration struct.
    pub fn field(&self) -> &'static str {
        self.field
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
    }
}
