use tower_layer::Layer;

use super::{AllNormal, LoadShed, LoadShedder};
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

impl<P, C> LoadShedLayer<P, C> {
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
