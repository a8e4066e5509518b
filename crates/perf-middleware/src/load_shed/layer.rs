use tower_layer::Layer;

use super::{AllNormal, LoadShed, LoadShedConfig, LoadShedder, PathPriorities};
use crate::BuildError;
use crate::clock::FastClock;

/// Sheds load; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct LoadShedLayer<P = AllNormal, C = FastClock> {
    shedder: LoadShedder<C>,
    prioritize: P,
}

impl<C> LoadShedLayer<AllNormal, C> {
    /// Admits requests through `shedder`, all with normal priority.
    pub fn new(shedder: LoadShedder<C>) -> Self {
        LoadShedLayer {
            shedder,
            prioritize: AllNormal,
        }
    }
}

impl LoadShedLayer<PathPriorities> {
    /// A shedder and path priorities from `config`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting.
    pub fn from_config(config: &LoadShedConfig) -> Result<Self, BuildError> {
        let priorities = PathPriorities::new()
            .exempt(&config.exempt_paths)
            .low(&config.low_priority_paths)
            .high(&config.high_priority_paths);
        Ok(LoadShedLayer::new(LoadShedder::new(config.clone())?).prioritize(priorities))
    }
}

impl<P, C> LoadShedLayer<P, C> {
    /// The shedder, to read its stats.
    pub fn shedder(&self) -> &LoadShedder<C> {
        &self.shedder
    }

    /// Gives each request the priority `prioritize` assigns.
    pub fn prioritize<P2>(self, prioritize: P2) -> LoadShedLayer<P2, C> {
        LoadShedLayer {
            shedder: self.shedder,
            prioritize,
        }
    }
}

impl<S, P: Clone, C> Layer<S> for LoadShedLayer<P, C> {
    type Service = LoadShed<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed::with_parts(inner, self.shedder.clone(), self.prioritize.clone())
    }
}
