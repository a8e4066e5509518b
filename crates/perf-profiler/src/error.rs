//! Errors: invalid configuration.

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
    pub(crate) fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        BuildError {
            field,
            reason: reason.into(),
        }
    }

    /// The configuration field at fault.
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
        write!(
            f,
            "invalid profiler config: `{}` {}",
            self.field, self.reason
        )
    }
}

impl Error for BuildError {}
