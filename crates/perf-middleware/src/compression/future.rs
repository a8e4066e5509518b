use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::codec::Encoder;
use super::layer::Settings;
use super::{CompressionBody, Encoding};

pin_project! {
    /// Response future of [`Compression`](super::Compression).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        encoding: Option<Encoding>,
        settings: Arc<Settings>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, encoding: Option<Encoding>, settings: Arc<Settings>) -> Self {
        ResponseFuture {
            inner,
            encoding,
            settings,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<CompressionBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let settings = &**this.settings;
        let (mut parts, body) = response.into_parts();
        let compressible = is_compressible(parts.status, &parts.headers, &body, settings);
        if compressible {
            // The representation depends on Accept-Encoding whichever coding is chosen, so
            // caches must key on it even for the identity answer.
            add_vary(&mut parts.headers);
        }
        let body = match this.encoding.filter(|_| compressible) {
            Some(encoding) => {
                let headers = &mut parts.headers;
                headers.insert(header::CONTENT_ENCODING, encoding.header_value());
                headers.remove(header::CONTENT_LENGTH);
                headers.remove(header::ACCEPT_RANGES);
                CompressionBody::compressed(body, Encoder::new(encoding, &settings.config))
            }
            None => CompressionBody::identity(body),
        };
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}

fn is_compressible<B: Body>(
    status: StatusCode,
    headers: &HeaderMap,
    body: &B,
    settings: &Settings,
) -> bool {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || headers.contains_key(header::CONTENT_ENCODING)
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    let no_transform = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-transform"));
    if no_transform {
        return false;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    if !content_type.is_some_and(|t| settings.config.compresses(t)) {
        return false;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .or_else(|| body.size_hint().exact());
    declared.is_none_or(|length| length >= settings.config.min_size as u64)
}

fn add_vary(headers: &mut HeaderMap) {
    let already = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}
