//! Bearer-token auth.
//!
//! Admin tokens guard every write and the audience export; an optional check
//! token guards reads and checks. Tokens are compared in constant time and
//! never logged. Each admin token has a name, which becomes the request's
//! [`Actor`] for logs. A client that keeps presenting wrong tokens is
//! answered 429 for a while ([`super::limiter`]), and each wrong token is
//! logged with the client's address and the route, never the token.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

use super::AppState;
use super::error::ApiError;

/// Who made a request, by token name. Present on authenticated requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// The shortest token accepted at start: 16 characters of `openssl rand
/// -hex 8` already take 2^64 guesses, and the limiter allows a handful a
/// minute.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Tokens are kept and compared as SHA-256 digests: every comparison is of
/// 32 bytes, in constant time, so neither a token's content nor its length
/// shows in the time an answer takes, and the process holds no token itself.
type Digest = [u8; 32];

fn digest(token: &[u8]) -> Digest {
    Sha256::digest(token).into()
}

/// Refuses a token shorter than [`MIN_TOKEN_CHARS`]; the error names it by
/// `what` (its variable), never by value.
pub fn ensure_usable_token(what: &str, token: &Secret) -> anyhow::Result<()> {
    // Presented tokens are trimmed (`bearer`), so a configured one with
    // white space around it could never match; say so instead.
    anyhow::ensure!(
        token.expose().trim_ascii() == token.expose(),
        "{what} starts or ends with white space, so no request could present it; remove it"
    );
    anyhow::ensure!(
        token.expose().chars().count() >= MIN_TOKEN_CHARS,
        "{what} is shorter than {MIN_TOKEN_CHARS} characters; use a random one, e.g. `openssl rand -hex 16`"
    );
    Ok(())
}

/// The configured tokens, as digests. `Debug` shows the names only.
#[derive(Clone)]
pub struct Tokens {
    admin: Vec<(String, Digest)>,
    check: Option<Digest>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let names: Vec<&str> = self.admin.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Tokens")
            .field("admin", &names)
            .field("check", &self.check.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Tokens {
    /// `admin` pairs are (name, token). Empty tokens are refused: an empty
    /// bearer would otherwise match a misconfigured deployment. Length is
    /// checked where the tokens are read ([`ensure_usable_token`]), which
    /// knows which variable to name.
    pub fn new(admin: Vec<(String, Secret)>, check: Option<Secret>) -> anyhow::Result<Tokens> {
        anyhow::ensure!(!admin.is_empty(), "at least one admin token is required");
        for (name, token) in &admin {
            anyhow::ensure!(!token.expose().is_empty(), "admin token {name:?} is empty");
        }
        Ok(Tokens {
            admin: admin
                .into_iter()
                .map(|(name, token)| (name, digest(token.expose().as_bytes())))
                .collect(),
            check: check
                .filter(|t| !t.expose().is_empty())
                .map(|t| digest(t.expose().as_bytes())),
        })
    }

    /// A single admin token named `admin`.
    pub fn single(token: impl AsRef<str>) -> Tokens {
        Tokens {
            admin: vec![("admin".into(), digest(token.as_ref().as_bytes()))],
            check: None,
        }
    }

    pub fn with_check_token(mut self, token: impl AsRef<str>) -> Tokens {
        self.check = Some(digest(token.as_ref().as_bytes()));
        self
    }

    /// How many admin tokens are configured; for the start-up log, which
    /// never names a token.
    pub fn admin_count(&self) -> usize {
        self.admin.len()
    }

    /// Whether reads and checks need a token.
    pub fn has_check_token(&self) -> bool {
        self.check.is_some()
    }

    /// The name of the admin token equal to `presented`, if any. Every
    /// configured token is compared, so timing does not reveal which matched.
    pub fn admin_name(&self, presented: &[u8]) -> Option<&str> {
        let presented = digest(presented);
        let mut found = None;
        for (name, token) in &self.admin {
            if bool::from(token.ct_eq(&presented)) {
                found = Some(name.as_str());
            }
        }
        found
    }

    fn is_check_token(&self, presented: &[u8]) -> bool {
        self.check
            .as_ref()
            .is_some_and(|t| bool::from(t.ct_eq(&digest(presented))))
    }
}

/// What a route needs from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Open,
    Read,
    Admin,
}

/// The access policy, in one place: writes, the export, the audit log, the
/// audience history and the near-cache's per-campaign state need an admin token; other `/v1` reads and checks need the check token when one is set.
pub fn required_access(method: &Method, path: &str) -> Access {
    if !path.starts_with("/v1/") {
        return Access::Open;
    }
    let is_read = method == Method::GET || method == Method::HEAD;
    let is_check = method == Method::POST && path == "/v1/check";
    let is_export = is_read && path.ends_with("/audience");
    let is_audit = path == "/v1/audit";
    let is_cache = path == "/v1/cache";
    // Who changed an audience is the audit log's information.
    let is_history = matches!(
        path.split('/').collect::<Vec<_>>()[..],
        ["", "v1", "campaigns", _, "versions"]
    );
    if is_export || is_audit || is_cache || is_history || !(is_read || is_check) {
        Access::Admin
    } else {
        Access::Read
    }
}

/// The endpoints the portal's upload form streams to: replace, add, remove.
pub(super) fn is_audience_upload(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v1/campaigns/") else {
        return false;
    };
    match rest.split_once('/') {
        Some((_, "audience")) => method == Method::PUT,
        Some((_, "audience/add" | "audience/remove")) => method == Method::POST,
        _ => false,
    }
}

/// The header carrying a portal session's CSRF token on API calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let token = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))?;
    Some(token.trim_ascii())
}

pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let access = required_access(request.method(), request.uri().path());
    if access == Access::Open {
        return Ok(next.run(request).await);
    }
    let tokens = &state.tokens;
    let presented = bearer(&request);
    // Checks that hold what they need skip the limiter: the login path must
    // not go down because someone behind the same NAT or load balancer sent
    // wrong tokens. Letting a check token through while its client is
    // limited gives a guesser nothing useful: tokens are at least 16
    // characters, and this only answers reads.
    if access == Access::Read
        && (!tokens.has_check_token() || presented.is_some_and(|p| tokens.is_check_token(p)))
    {
        if let Some(name) = presented.and_then(|p| tokens.admin_name(p)) {
            let name = name.to_string();
            request.extensions_mut().insert(Actor(name));
        }
        return Ok(next.run(request).await);
    }
    // A limited client is refused before an admin token is compared: a
    // right guess must not get through while it is limited.
    let client = presented.map(|_| {
        state
            .proxies
            .client_of(request.extensions(), request.headers())
    });
    if let Some(client) = client
        && let Err(wait) = state.limiter.check(client)
    {
        return Err(ApiError::TooManyFailures(wait));
    }
    let mut actor = presented
        .and_then(|p| tokens.admin_name(p))
        .map(str::to_string);
    // The portal's upload form streams to the audience endpoints from the
    // browser, with its session cookie instead of a token; only those take a
    // cookie, so every other API call still needs a bearer token. A cookie is sent
    // by the browser on its own, so it counts only with the session's CSRF
    // token in a header, which another site's page cannot read or set.
    if presented.is_none()
        && is_audience_upload(request.method(), request.uri().path())
        && let Some(session) = state.portal.sessions.from_headers(request.headers())
    {
        let csrf = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        if !csrf.is_some_and(|c| session.csrf_matches(c)) {
            return Err(ApiError::Forbidden(
                "a portal session needs its CSRF token in the X-CSRF-Token header".into(),
            ));
        }
        actor = Some(session.actor);
    }
    let allowed = match access {
        Access::Open => true,
        Access::Admin => actor.is_some(),
        Access::Read => {
            !tokens.has_check_token()
                || actor.is_some()
                || presented.is_some_and(|p| tokens.is_check_token(p))
        }
    };
    if !allowed {
        if let Some(client) = client {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", |p| p.as_str());
            let method = request.method();
            // A known token on the wrong endpoint is a mistake (or a leaked
            // check token probing further), not a guess: logged, not counted.
            let known = presented
                .is_some_and(|p| tokens.admin_name(p).is_some() || tokens.is_check_token(p));
            if known {
                tracing::warn!(%client, %method, route, "refused a token on an endpoint it does not cover");
            } else {
                state.limiter.failed(client);
                tracing::warn!(%client, %method, route, "refused a bearer token");
            }
        }
        let message = match (presented, access) {
            (None, Access::Admin) => {
                "this endpoint needs an admin token: send Authorization: Bearer <token>"
            }
            (None, _) => "this endpoint needs a token: send Authorization: Bearer <token>",
            (Some(_), _) => "the token is not valid for this endpoint",
        };
        return Err(ApiError::Unauthorized(message.into()));
    }
    if let Some(name) = actor {
        request.extensions_mut().insert(Actor(name));
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_exports_need_admin_and_checks_need_read() {
        let cases = [
            (Method::POST, "/v1/campaigns", Access::Admin),
            (Method::PATCH, "/v1/campaigns/a", Access::Admin),
            (Method::DELETE, "/v1/campaigns/a", Access::Admin),
            (Method::PUT, "/v1/campaigns/a/audience", Access::Admin),
            (Method::POST, "/v1/campaigns/a/audience/add", Access::Admin),
            (Method::GET, "/v1/campaigns/a/audience", Access::Admin),
            (Method::GET, "/v1/audit", Access::Admin),
            (Method::GET, "/v1/cache", Access::Admin),
            (Method::GET, "/v1/campaigns", Access::Read),
            (Method::GET, "/v1/campaigns/a/members/1", Access::Read),
            (Method::GET, "/v1/users/1/campaigns", Access::Read),
            (Method::POST, "/v1/check", Access::Read),
            (Method::GET, "/healthz", Access::Open),
            (Method::GET, "/metrics", Access::Open),
        ];
        for (method, path, want) in cases {
            assert_eq!(required_access(&method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn only_the_audience_uploads_take_a_portal_session() {
        let cases = [
            (Method::PUT, "/v1/campaigns/a/audience", true),
            (Method::POST, "/v1/campaigns/a/audience/add", true),
            (Method::POST, "/v1/campaigns/a/audience/remove", true),
            (Method::GET, "/v1/campaigns/a/audience", false),
            (Method::POST, "/v1/campaigns/a/audience", false),
            (Method::DELETE, "/v1/campaigns/a", false),
            (Method::PATCH, "/v1/campaigns/a", false),
            (Method::POST, "/v1/campaigns", false),
            (Method::GET, "/v1/audit", false),
            (Method::PUT, "/v1/campaigns/a/b/audience", false),
        ];
        for (method, path, want) in cases {
            assert_eq!(is_audience_upload(&method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let t = Tokens::single("s3cret-value").with_check_token("other-s3cret");
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("admin"));
    }

    #[test]
    fn the_matching_admin_token_names_the_actor() {
        let t = Tokens::new(
            vec![
                ("alice".into(), Secret::new("aaa")),
                ("bob".into(), Secret::new("bbb")),
            ],
            None,
        )
        .unwrap();
        assert_eq!(t.admin_name(b"bbb"), Some("bob"));
        assert_eq!(t.admin_name(b"bb"), None);
        assert_eq!(t.admin_name(b"bbbb"), None);
        assert!(Tokens::new(vec![("x".into(), Secret::new(""))], None).is_err());
    }

    #[test]
    fn a_short_token_is_refused_by_name_never_by_value() {
        let e = ensure_usable_token("GUESTLIST_CHECK_TOKEN", &Secret::new("fifteen-chars!!"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GUESTLIST_CHECK_TOKEN") && e.contains("16"),
            "{e}"
        );
        assert!(!e.contains("fifteen"), "{e}");
        // Characters, not bytes: 16 two-byte letters pass, as do 16 ASCII ones.
        assert!(ensure_usable_token("t", &Secret::new("é".repeat(16))).is_ok());
        assert!(ensure_usable_token("t", &Secret::new("é".repeat(8))).is_err());
        assert!(ensure_usable_token("t", &Secret::new("0123456789abcdef")).is_ok());
        let e = ensure_usable_token("T", &Secret::new("0123456789abcdef "))
            .unwrap_err()
            .to_string();
        assert!(e.contains("white space") && !e.contains("0123"), "{e}");
    }
}
