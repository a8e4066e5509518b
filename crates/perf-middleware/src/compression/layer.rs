use std::sync::Arc;

use tower_layer::Layer;

use super::{Compression, CompressionConfig, Encoding};
use crate::BuildError;

/// Compresses responses; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct CompressionLayer {
    pub(crate) settings: Arc<Settings>,
}

#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) config: CompressionConfig,
    pub(crate) enabled: Vec<Encoding>,
}

impl CompressionLayer {
    /// Every coding, with the defaults of [`CompressionConfig`].
    pub fn new() -> Self {
        Self::from_config(CompressionConfig::default()).expect("the defaults are valid")
    }

    /// A layer with `config`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for an invalid level or content type.
    pub fn from_config(config: CompressionConfig) -> Result<Self, BuildError> {
        config.validate()?;
        Ok(CompressionLayer {
            settings: Arc::new(Settings {
                enabled: config.enabled(),
                config,
            }),
        })
    }
}

impl Default for CompressionLayer {
    fn default() -> Self {
        CompressionLayer::new()
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compression::with_layer(inner, self.clone())
    }
}
