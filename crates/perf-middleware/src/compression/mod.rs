//! Response compression on async-compression: gzip, deflate, brotli and zstd, negotiated
//! from `Accept-Encoding` with q-values, streamed frame by frame.
//!
//! Defaults suit dynamic APIs ([`CompressionConfig`]): bodies under 1 KiB are left alone,
//! gzip runs at level 6 and brotli at quality 4 rather than its very slow default. Only
//! listed content types are compressed; responses already encoded, partial responses, `204`,
//! `304` and `Cache-Control: no-transform` pass untouched. Compressible responses get
//! `Vary: Accept-Encoding`. Each data frame is compressed and flushed as it arrives, so an
//! event stream reaches the client event by event instead of waiting for the buffer to fill.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use perf_middleware::compression::CompressionLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let json = format!("[{}]", vec![r#"{"speaker":"left","text":"hello"}"#; 100].join(","));
//! let mut service = ServiceBuilder::new()
//!     .layer(CompressionLayer::new())
//!     .service(service_fn(move |_: Request<()>| {
//!         let json = json.clone();
//!         async move {
//!             Ok::<_, Infallible>(Response::builder()
//!                 .header("content-type", "application/json")
//!                 .body(Full::new(bytes::Bytes::from(json)))
//!                 .unwrap())
//!         }
//!     }));
//!
//! let request = Request::get("/").header("accept-encoding", "gzip;q=0.8, br").body(()).unwrap();
//! let response = service.ready().await.unwrap().call(request).await.unwrap();
//! assert_eq!(response.headers()["content-encoding"], "br");
//! assert_eq!(response.headers()["vary"], "accept-encoding");
//! let compressed = response.into_body().collect().await.unwrap().to_bytes();
//! assert!(compressed.len() < 200);
//! # }
//! ```

mod body;
mod codec;
mod config;
mod encoding;
mod future;
mod layer;
mod service;

pub use body::CompressionBody;
pub use config::CompressionConfig;
pub use encoding::Encoding;
pub use future::ResponseFuture;
pub use layer::CompressionLayer;
pub use service::Compression;
