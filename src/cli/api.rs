//! The HTTP client of the admin commands: one place that adds the token,
//! the deadlines, and turns every failure into a [`CliError`].

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::error::{self, CliError};
use crate::config::Remote;
use crate::secret::Secret;

/// Deadline of an ordinary call; uploads and exports get their own.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of a whole upload or export: long, but never infinite.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

pub struct Api {
    http: reqwest::Client,
    /// The server as given, without a trailing `/`; a path prefix (a proxy
    /// that serves guestlist under `/guestlist`) is kept.
    base: String,
    token: Option<Secret>,
    pub json: bool,
}

impl Api {
    pub fn new(remote: &Remote) -> Result<Api, CliError> {
        let base = server_base(&remote.server)?;
        let token = crate::secret::from_env("GUESTLIST_TOKEN")
            .map_err(|e| CliError::usage(format!("{e:#}")))?;
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(path) = &remote.ca_file {
            let roots = crate::tls::ca_certificates(path)
                .map_err(|e| CliError::usage(format!("--ca-file {}: {e:#}", path.display())))?;
            builder = builder.tls_certs_only(roots);
        }
        let http = builder
            .build()
            .map_err(|e| CliError::usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Api {
            http,
            base,
            token,
            json: remote.json,
        })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        req.timeout(CALL_TIMEOUT)
    }

    /// Sends a request and returns the response if it is a success, with
    /// `METHOD /path` for messages.
    pub async fn fetch(&self, req: RequestBuilder) -> Result<(Response, String), CliError> {
        let req = req
            .build()
            .map_err(|e| CliError::usage(format!("cannot build the request: {e}")))?;
        let what = format!("{} {}", req.method(), req.url().path());
        let timeout = req.timeout().copied();
        let response = self
            .http
            .execute(req)
            .await
            .map_err(|e| self.transport(&e, timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok((response, what));
        }
        let body = response.text().await.unwrap_or_default();
        Err(error::answer(
            status,
            &body,
            &self.base,
            &what,
            self.token.is_some(),
        ))
    }

    /// Sends a request and returns its JSON body (`null` for 204).
    pub async fn send(&self, req: RequestBuilder) -> Result<Value, CliError> {
        let (response, what) = self.fetch(req).await?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| self.transport(&e, None))?;
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|_| self.not_guestlist(status, &what))
    }

    pub fn transport(&self, e: &reqwest::Error, timeout: Option<Duration>) -> CliError {
        error::transport(e, &self.base, timeout)
    }

    pub fn not_guestlist(&self, status: StatusCode, what: &str) -> CliError {
        error::not_guestlist(status, &self.base, what)
    }
}

/// `--server` without its trailing `/`, refused with the fix when it is not
/// an http(s) URL.
fn server_base(server: &str) -> Result<String, CliError> {
    let base = server.trim().trim_end_matches('/');
    if !base.contains("://") {
        return Err(CliError::usage(format!(
            "--server {server}: missing scheme: use http://{base} (or https://{base})"
        ))
        .with_hint("the server comes from --server, or GUESTLIST_SERVER when the flag is absent"));
    }
    let url = reqwest::Url::parse(base)
        .map_err(|e| CliError::usage(format!("--server {server} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CliError::usage(format!(
            "--server {server}: the scheme must be http:// or https://, not {}://",
            url.scheme()
        )));
    }
    Ok(base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_a_scheme_is_refused_with_the_fix() {
        let e = server_base("127.0.0.1:8080").unwrap_err();
        assert_eq!(
            e.message,
            "--server 127.0.0.1:8080: missing scheme: use http://127.0.0.1:8080 (or https://127.0.0.1:8080)"
        );
        assert_eq!(e.exit, super::super::Exit::Usage);
        // `localhost:8080` parses as a URL of scheme `localhost`.
        assert!(
            server_base("localhost:8080")
                .unwrap_err()
                .message
                .contains("missing scheme")
        );
        assert!(
            server_base("ftp://h")
                .unwrap_err()
                .message
                .contains("http:// or https://")
        );
        assert_eq!(
            server_base("https://h:1/prefix/").unwrap(),
            "https://h:1/prefix"
        );
    }
}
