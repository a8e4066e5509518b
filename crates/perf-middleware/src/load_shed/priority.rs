use crate::rate_limit::RequestHead;

/// How a request fares when the service is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Shed first: refused once in-flight requests reach `low_priority_share` of the limit
    /// (background jobs, list pages).
    Low,
    /// Refused at the limit.
    #[default]
    Normal,
    /// May use the reserve above the limit (`high_priority_reserve`): paying customers,
    /// requests that finish work already started.
    High,
    /// Never refused and not counted: health checks, metrics scrapes.
    Exempt,
}

/// Assigns a [`Priority`] to each request.
///
/// Implemented for closures `Fn(&RequestHead<'_>) -> Priority`.
pub trait Prioritize {
    /// The priority of `request`.
    fn priority(&self, request: &RequestHead<'_>) -> Priority;
}

impl<F> Prioritize for F
where
    F: Fn(&RequestHead<'_>) -> Priority,
{
    fn priority(&self, request: &RequestHead<'_>) -> Priority {
        self(request)
    }
}

/// Every request has [`Priority::Normal`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AllNormal;

impl Prioritize for AllNormal {
    #[inline]
    fn priority(&self, _request: &RequestHead<'_>) -> Priority {
        Priority::Normal
    }
}

/// Requests whose path starts with one of the prefixes are exempt (`/health`, `/metrics`);
/// the rest are normal.
#[derive(Debug, Clone)]
pub struct ExemptPaths {
    prefixes: Vec<String>,
}

impl ExemptPaths {
    /// Exempts paths starting with any of `prefixes`.
    pub fn new<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExemptPaths {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
        }
    }
}

impl Prioritize for ExemptPaths {
    fn priority(&self, request: &RequestHead<'_>) -> Priority {
        let path = request.uri.path();
        if self
            .prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
        {
            Priority::Exempt
        } else {
            Priority::Normal
        }
    }
}
