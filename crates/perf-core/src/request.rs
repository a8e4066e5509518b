//! The parts of a request that layers decide on: everything but the body, so a decision
//! does not depend on the body type.

use http::{Extensions, HeaderMap, Method, Request, Uri};

/// The parts of a request a layer decides on: everything but the body.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (peer address, authenticated user...).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_the_request_without_its_body() {
        let mut request = Request::post("/a?b=1")
            .header("x-k", "v")
            .body(vec![1u8; 8])
            .unwrap();
        request.extensions_mut().insert(7u32);
        let head = RequestHead::of(&request);
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.query(), Some("b=1"));
        assert_eq!(head.headers["x-k"], "v");
        assert_eq!(head.extensions.get::<u32>(), Some(&7));
    }
}
