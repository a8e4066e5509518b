//! Permits: the right to make one call, and the place its outcome is recorded.

use std::fmt;

use crate::breaker::{CircuitBreaker, Inner};

/// What the breaker needs to know about an admitted call when its outcome comes back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    /// The state word's generation at admission.
    pub(crate) generation: u16,
    /// Whether this call holds a half-open probe slot.
    pub(crate) probe: bool,
    /// When the call began, in nanoseconds on the breaker clock; only taken when slow calls
    /// are counted.
    pub(crate) started: Option<u64>,
}

/// The right to make one call, borrowed from a [`CircuitBreaker`].
///
/// Record the outcome with [`success`](Self::success), [`failure`](Self::failure) or
/// [`record`](Self::record). Dropping the permit instead counts the call as cancelled and
/// gives a half-open probe slot back, so a caller that gives up (a timeout, a dropped
/// future) never wedges the breaker half-open.
#[must_use = "dropping a permit counts the call as cancelled"]
pub struct Permit<'a> {
    inner: &'a Inner,
    ticket: Option<Ticket>,
}

/// A [`Permit`] that owns a handle to its breaker, for `'static` futures.
#[must_use = "dropping a permit counts the call as cancelled"]
pub struct OwnedPermit {
    breaker: CircuitBreaker,
    ticket: Option<Ticket>,
}

impl<'a> Permit<'a> {
    #[inline]
    pub(crate) fn new(inner: &'a Inner, ticket: Ticket) -> Self {
        Permit {
            inner,
            ticket: Some(ticket),
        }
    }
}

impl OwnedPermit {
    #[inline]
    pub(crate) fn new(breaker: CircuitBreaker, ticket: Ticket) -> Self {
        OwnedPermit {
            breaker,
            ticket: Some(ticket),
        }
    }

    #[inline]
    fn inner(&self) -> &Inner {
        &self.breaker.inner
    }
}

/// The outcome methods and the cancel-on-drop, the same for both permits.
macro_rules! permit_outcomes {
    ($permit:ty) => {
        impl $permit {
            /// Records a success.
            #[inline]
            pub fn success(self) {
                self.record(false);
            }

            /// Records a failure.
            #[inline]
            pub fn failure(self) {
                self.record(true);
            }

            /// Records a failure if `failed`, a success otherwise.
            #[inline]
            pub fn record(mut self, failed: bool) {
                if let Some(ticket) = self.ticket.take() {
                    self.inner().record(ticket, failed);
                }
            }

            /// Whether this call is a half-open probe.
            pub fn is_probe(&self) -> bool {
                self.ticket.is_some_and(|ticket| ticket.probe)
            }
        }

        impl Drop for $permit {
            #[inline]
            fn drop(&mut self) {
                if let Some(ticket) = self.ticket.take() {
                    self.inner().cancel(ticket);
                }
            }
        }

        impl fmt::Debug for $permit {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($permit))
                    .field("probe", &self.is_probe())
                    .finish_non_exhaustive()
            }
        }
    };
}

impl Permit<'_> {
    #[inline]
    fn inner(&self) -> &Inner {
        self.inner
    }
}

permit_outcomes!(Permit<'_>);
permit_outcomes!(OwnedPermit);
