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

/// Priorities by method and path prefix: each rule is a prefix (`/api/v1/health`), or a
/// method and a prefix (`POST /api/v1/transcribe`). Exempt rules are checked first, then
/// low, then high; a request no rule matches is normal.
///
/// ```
/// use http::Request;
/// use perf_middleware::load_shed::{PathPriorities, Prioritize, Priority};
/// use perf_middleware::rate_limit::RequestHead;
///
/// let rules = PathPriorities::new()
///     .exempt(["/health"])
///     .low(["POST /api/v1/transcribe"]);
/// let priority = |request: Request<()>| rules.priority(&RequestHead::of(&request));
/// assert_eq!(priority(Request::get("/health/db").body(()).unwrap()), Priority::Exempt);
/// assert_eq!(priority(Request::post("/api/v1/transcribe").body(()).unwrap()), Priority::Low);
/// assert_eq!(priority(Request::get("/api/v1/transcribe/1").body(()).unwrap()), Priority::Normal);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PathPriorities {
    rules: Vec<(Priority, Rule)>,
}

#[derive(Debug, Clone)]
struct Rule {
    method: Option<http::Method>,
    prefix: String,
}

impl Rule {
    fn parse(text: &str) -> Self {
        match text.trim().split_once(' ') {
            Some((method, prefix)) => Rule {
                method: http::Method::from_bytes(method.as_bytes()).ok(),
                prefix: prefix.trim().to_owned(),
            },
            None => Rule {
                method: None,
                prefix: text.trim().to_owned(),
            },
        }
    }

    fn matches(&self, request: &RequestHead<'_>) -> bool {
        self.method
            .as_ref()
            .is_none_or(|method| method == request.method)
            && request.uri.path().starts_with(self.prefix.as_str())
    }
}

impl PathPriorities {
    /// No rules: every request is normal.
    pub fn new() -> Self {
        PathPriorities::default()
    }

    fn with<I, S>(mut self, priority: Priority, rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rules.extend(
            rules
                .into_iter()
                .map(|rule| (priority, Rule::parse(rule.as_ref()))),
        );
        // Exempt first, then low, then high: the order of `Priority` with exempt moved up.
        self.rules.sort_by_key(|(priority, _)| match priority {
            Priority::Exempt => 0,
            Priority::Low => 1,
            Priority::High => 2,
            Priority::Normal => 3,
        });
        self
    }

    /// Requests matching `rules` are never shed nor counted.
    pub fn exempt<I, S>(self, rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.with(Priority::Exempt, rules)
    }

    /// Requests matching `rules` are shed first.
    pub fn low<I, S>(self, rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.with(Priority::Low, rules)
    }

    /// Requests matching `rules` may use the reserve above the limit.
    pub fn high<I, S>(self, rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.with(Priority::High, rules)
    }
}

impl Prioritize for PathPriorities {
    fn priority(&self, request: &RequestHead<'_>) -> Priority {
        self.rules
            .iter()
            .find(|(_, rule)| rule.matches(request))
            .map_or(Priority::Normal, |(priority, _)| *priority)
    }
}
