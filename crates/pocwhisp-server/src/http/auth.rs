//! Bearer tokens: who a request comes from ([`AuthenticateLayer`], outside every other
//! layer, so the rate limiter keys by a verified identity and `Server-Timing` knows admins),
//! and what each route requires ([`RequireRole`], per route family).
//!
//! Tokens are kept as SHA-256 digests only, and a presented token is hashed and compared
//! with every configured digest in constant time, so neither the stored form nor the
//! comparison's timing reveals a token.

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::response::{IntoResponse, Response};
use http::Request;
use http::header::AUTHORIZATION;
use perf_middleware::rate_limit::Identity;
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use super::error::ApiError;
use crate::config::{AuthConfig, Environment, Role, split_secrets};

/// Who a verified token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// A stable name for logs, rate limits and ownership (`token:ops`).
    pub identity: Arc<str>,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// Whether this principal may use a route that needs `role`.
    pub fn may(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// A request that presented a bearer token matching no configured one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InvalidToken;

/// The configured tokens, as digests.
#[derive(Debug)]
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
    renamed: Vec<(String, Arc<str>)>,
}

/// The identity of a token given in clear (`POCWHISP_ADMIN_TOKEN`, `POCWHISP_API_TOKEN`):
/// `env:` and the first 16 hex digits of its SHA-256, so that it stays with the token
/// whatever else the list holds and in which order. (The digest is what `auth.tokens`
/// configures in full, so its first half reveals no more.)
fn environment_identity(token_digest: &[u8; 32]) -> Arc<str> {
    let mut identity = String::from("env:");
    for byte in &token_digest[..8] {
        identity.push_str(&format!("{byte:02x}"));
    }
    Arc::from(identity)
}

/// What the token set was built from, for the start-up log.
#[derive(Debug)]
pub struct TokenSummary {
    /// Tokens of each role.
    pub admins: usize,
    /// User tokens.
    pub users: usize,
    /// An admin token made up at start (development with none configured): printed once.
    pub generated_admin: Option<String>,
}

impl Tokens {
    /// The tokens of `auth`: hashed ones by name, and the clear ones of
    /// `POCWHISP_ADMIN_TOKEN` / `POCWHISP_API_TOKEN`, each its own identity. In development
    /// with no admin token at all, one is generated.
    pub fn from_config(auth: &AuthConfig, environment: Environment) -> (Tokens, TokenSummary) {
        let mut entries = Vec::new();
        let mut renamed = Vec::new();
        for token in &auth.tokens {
            let mut digest = [0u8; 32];
            for (byte, pair) in digest.iter_mut().zip(token.sha256.as_bytes().chunks(2)) {
                *byte =
                    u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("00"), 16).unwrap_or(0);
            }
            entries.push((
                digest,
                Principal {
                    identity: Arc::from(format!("token:{}", token.name)),
                    role: token.role,
                },
            ));
        }
        for (secrets, role, kind) in [
            (&auth.admin_tokens, Role::Admin, "admin"),
            (&auth.api_tokens, Role::User, "user"),
        ] {
            for (n, secret) in split_secrets(secrets).iter().enumerate() {
                let digest = digest(secret.expose());
                let identity = environment_identity(&digest);
                renamed.push((format!("env:{kind}-{}", n + 1), Arc::clone(&identity)));
                entries.push((digest, Principal { identity, role }));
            }
        }
        let mut generated_admin = None;
        let has_admin = entries
            .iter()
            .any(|(_, principal)| principal.role == Role::Admin);
        if environment == Environment::Development && !has_admin {
            let token = random_token();
            entries.push((
                digest(&token),
                Principal {
                    identity: Arc::from("generated:admin"),
                    role: Role::Admin,
                },
            ));
            generated_admin = Some(token);
        }
        let count = |role| entries.iter().filter(|(_, p)| p.role == role).count();
        let summary = TokenSummary {
            admins: count(Role::Admin),
            users: count(Role::User),
            generated_admin,
        };
        (Tokens { entries, renamed }, summary)
    }

    /// The identity each token given in clear had before identities were derived from the
    /// tokens (its kind and place in its list, `env:user-2`: a place that passed to another
    /// token when the list changed), with its identity now. Sessions stored under a former
    /// identity are given to the new one at start, once, which is right as long as the list
    /// is still in the order the former identities were given in.
    pub fn renamed_identities(&self) -> &[(String, Arc<str>)] {
        &self.renamed
    }

    /// The principal of `token`, comparing its digest with every configured one.
    pub fn verify(&self, token: &str) -> Option<&Principal> {
        let presented = digest(token);
        let mut found = None;
        for (stored, principal) in &self.entries {
            if bool::from(stored.ct_eq(&presented)) && found.is_none() {
                found = Some(principal);
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 32 random bytes from the kernel, as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Resolves the bearer token of every request: a valid one puts its [`Principal`] and its
/// rate-limit [`Identity`] in the extensions; a wrong one leaves a mark so routes answer 401
/// "invalid token" rather than "missing". Refuses nothing itself.
#[derive(Debug, Clone)]
pub(crate) struct AuthenticateLayer {
    tokens: Arc<Tokens>,
}

impl AuthenticateLayer {
    pub(crate) fn new(tokens: Arc<Tokens>) -> Self {
        AuthenticateLayer { tokens }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            tokens: Arc::clone(&self.tokens),
        }
    }
}

/// A service whose requests are authenticated; built by [`AuthenticateLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Authenticate<S> {
    inner: S,
    tokens: Arc<Tokens>,
}

impl<S, B> Service<Request<B>> for Authenticate<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let token = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        if let Some(token) = token {
            match self.tokens.verify(token) {
                Some(principal) => {
                    let principal = principal.clone();
                    request
                        .extensions_mut()
                        .insert(Identity(Arc::clone(&principal.identity)));
                    request.extensions_mut().insert(principal);
                }
                None => {
                    request.extensions_mut().insert(InvalidToken);
                }
            }
        }
        self.inner.call(request)
    }
}

/// Lets through requests whose principal has `role`: 401 with `WWW-Authenticate: Bearer`
/// without a valid token, 403 with one of too low a role.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequireRole(pub(crate) Role);

impl<S> Layer<S> for RequireRole {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            role: self.0,
        }
    }
}

/// A service that checks the role; built by [`RequireRole`].
#[derive(Debug, Clone)]
pub(crate) struct Authorize<S> {
    inner: S,
    role: Role,
}

/// Why a request may not pass, if it may not.
fn refusal<B>(request: &Request<B>, role: Role) -> Option<ApiError> {
    match request.extensions().get::<Principal>() {
        Some(principal) if principal.may(role) => None,
        Some(principal) => Some(ApiError::Forbidden(format!(
            "this route needs the {role} role; the token has the {} role",
            principal.role
        ))),
        None if request.extensions().get::<InvalidToken>().is_some() => {
            Some(ApiError::Unauthorized("the bearer token is not valid"))
        }
        None => Some(ApiError::Unauthorized(
            "this route needs `Authorization: Bearer <token>`",
        )),
    }
}

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AuthorizeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match refusal(&request, self.role) {
            None => AuthorizeFuture::Allowed {
                inner: self.inner.call(request),
            },
            Some(error) => AuthorizeFuture::Refused {
                response: Some(error.into_response()),
            },
        }
    }
}

pin_project! {
    /// Response future of [`Authorize`].
    #[project = AuthorizeProj]
    pub(crate) enum AuthorizeFuture<F> {
        Allowed { #[pin] inner: F },
        Refused { response: Option<Response> },
    }
}

impl<F, E> Future for AuthorizeFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuthorizeProj::Allowed { inner } => Poll::Ready(ready!(inner.poll(cx))),
            AuthorizeProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, TokenConfig};

    fn hex(token: &str) -> String {
        digest(token).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn tokens_verify_by_digest_and_each_env_token_is_its_own_identity() {
        let auth = AuthConfig {
            tokens: vec![TokenConfig {
                name: "ops".into(),
                role: Role::Admin,
                sha256: hex("s3cret-ops"),
            }],
            admin_tokens: vec![],
            api_tokens: vec![Secret::new("u1,u2")],
        };
        let (tokens, summary) = Tokens::from_config(&auth, Environment::Development);
        assert_eq!((summary.admins, summary.users), (1, 2));
        assert!(summary.generated_admin.is_none(), "an admin is configured");
        assert_eq!(&*tokens.verify("s3cret-ops").unwrap().identity, "token:ops");
        assert_eq!(tokens.verify("u1").unwrap().role, Role::User);
        assert_ne!(tokens.verify("u1"), tokens.verify("u2"));
        assert!(tokens.verify("s3cret-op").is_none());
        assert!(tokens.verify("").is_none());
    }

    #[test]
    fn an_environment_token_keeps_its_identity_wherever_it_is_in_the_list() {
        let listed = |tokens: &str| {
            let auth = AuthConfig {
                api_tokens: vec![Secret::new(tokens)],
                ..AuthConfig::default()
            };
            Tokens::from_config(&auth, Environment::Production).0
        };
        let before = listed("alice-token,bob-token");
        let after = listed("carol-token,bob-token,alice-token");
        for token in ["alice-token", "bob-token"] {
            assert_eq!(before.verify(token), after.verify(token), "{token}");
        }
        let identity = &before.verify("alice-token").unwrap().identity;
        assert_eq!(identity.len(), "env:".len() + 16);
        assert_ne!(identity, &before.verify("bob-token").unwrap().identity);
        // The former, positional identities, for the migration at start.
        assert_eq!(
            before.renamed_identities(),
            [
                ("env:user-1".to_owned(), Arc::clone(identity)),
                (
                    "env:user-2".to_owned(),
                    Arc::clone(&before.verify("bob-token").unwrap().identity)
                ),
            ]
        );
    }

    #[test]
    fn development_without_an_admin_gets_a_generated_one_and_production_does_not() {
        let (tokens, summary) =
            Tokens::from_config(&AuthConfig::default(), Environment::Development);
        let generated = summary.generated_admin.expect("generated");
        assert_eq!(generated.len(), 64);
        assert_eq!(tokens.verify(&generated).unwrap().role, Role::Admin);
        let (tokens, summary) =
            Tokens::from_config(&AuthConfig::default(), Environment::Production);
        assert!(summary.generated_admin.is_none());
        assert!(tokens.verify(&generated).is_none());
    }
}
