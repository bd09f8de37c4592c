//! What a failed admin command says, and the code it exits with.
//!
//! These failures are expected (a wrong token, a typo in `--server`, a file
//! that is a directory), so they print as one `error:` line that names the
//! cause and the fix, maybe a `hint:` line, and never a backtrace. The exit
//! codes are documented in [`crate::config::ADMIN_HELP`]; scripts rely on
//! them, so a code never changes meaning.

use std::process::ExitCode;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// The exit codes of the admin commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// `check`: the answer is "no", which is not a failure.
    NotMember = 1,
    /// The command line (or `GUESTLIST_SERVER`, `GUESTLIST_TOKEN`) is wrong,
    /// or a destructive command was not confirmed.
    Usage = 2,
    /// No usable answer: retrying later, or fixing the network or the
    /// server, may help.
    NoAnswer = 3,
    /// The server refused the request, or a local file cannot be used:
    /// retrying the same command will not help.
    Refused = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    /// One line: the cause first, then how to fix it.
    pub message: String,
    /// A second line with what to try, when there is more to say.
    pub hint: Option<String>,
    /// The server's error code (`campaign_exists`, …), for a command that
    /// can say it in its own terms.
    pub code: Option<String>,
}

impl CliError {
    fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            message: message.into(),
            hint: None,
            code: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Usage, message)
    }

    pub fn refused(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Refused, message)
    }

    pub fn no_answer(message: impl Into<String>) -> CliError {
        CliError::new(Exit::NoAnswer, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    pub fn print(&self) {
        eprintln!("error: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// A request that got no HTTP answer. `base` is the server as given.
pub fn transport(e: &reqwest::Error, base: &str, timeout: Option<Duration>) -> CliError {
    let chain = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source());
    let root = chain
        .clone()
        .last()
        .map(ToString::to_string)
        .unwrap_or_default();
    if chain
        .clone()
        .any(|cause| cause.to_string().contains("certificate"))
    {
        return CliError::no_answer(format!(
            "the server at {base} presented a TLS certificate this client does not trust ({root}); \
             pass --ca-file (or GUESTLIST_CA_FILE) with the CA that signed it"
        ));
    }
    if e.is_timeout() {
        let within = timeout.map_or(String::new(), |t| format!(" within {}s", t.as_secs()));
        return CliError::no_answer(format!("no answer from {base}{within}"))
            .with_hint("the server or the network is overloaded; try again later");
    }
    if e.is_connect() {
        return CliError::no_answer(format!("cannot connect to {base}: {root}")).with_hint(
            "is `guestlist serve` running there? Choose the server with --server or GUESTLIST_SERVER",
        );
    }
    CliError::no_answer(format!("the exchange with {base} failed: {root}"))
}

/// A non-2xx answer. Guestlist always answers errors with a JSON body
/// holding `error` and `message`; anything else came from another server
/// (or a proxy in front of guestlist that failed).
pub fn answer(
    status: StatusCode,
    body: &str,
    base: &str,
    request: &str,
    token_set: bool,
) -> CliError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let Some(code) = parsed
        .as_ref()
        .and_then(|b| b["error"].as_str())
        .map(str::to_string)
    else {
        return not_guestlist(status, base, request);
    };
    let body = parsed.unwrap_or_default();
    let message = body["message"].as_str().unwrap_or(&code).to_string();
    let tag = format!("(HTTP {} {code})", status.as_u16());
    let mut error = match status {
        StatusCode::UNAUTHORIZED if token_set => CliError::refused(format!(
            "the server refused the token in GUESTLIST_TOKEN: it is not a token this server knows, \
             or not an admin token {tag}"
        )),
        StatusCode::UNAUTHORIZED => CliError::refused(format!(
            "GUESTLIST_TOKEN is not set and this command needs a token: \
             export GUESTLIST_TOKEN=<admin token> {tag}"
        )),
        StatusCode::NOT_FOUND if code == "campaign_not_found" => {
            CliError::refused(format!("{message} {tag}"))
                .with_hint("`guestlist campaign list` shows the campaigns")
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
            CliError::no_answer(format!("{message} {tag}"))
        }
        s if s.is_client_error() => CliError::refused(format!("{message} {tag}")),
        _ => CliError::no_answer(format!("{message} {tag}")),
    };
    error.code = Some(code);
    error
}

pub fn not_guestlist(status: StatusCode, base: &str, request: &str) -> CliError {
    CliError::no_answer(format!(
        "the server at {base} is not guestlist: its answer to {request} ({status}) is not guestlist's JSON"
    ))
    .with_hint(
        "check --server (or GUESTLIST_SERVER); if a proxy sits in front of guestlist, it may be the one answering",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guestlist_error_leads_with_the_servers_message_and_keeps_its_code() {
        let body = r#"{"error":"invalid_user_id","message":"line 12345: \"x\" is not a user id","line":12345}"#;
        let e = answer(StatusCode::BAD_REQUEST, body, "http://h", "PUT /x", true);
        assert_eq!(
            e.message,
            "line 12345: \"x\" is not a user id (HTTP 400 invalid_user_id)"
        );
        assert_eq!(
            (e.exit, e.code.as_deref()),
            (Exit::Refused, Some("invalid_user_id"))
        );
    }

    #[test]
    fn an_unauthorized_answer_names_guestlist_token_whether_or_not_it_is_set() {
        let body = r#"{"error":"unauthorized","message":"send Authorization"}"#;
        for token_set in [false, true] {
            let e = answer(
                StatusCode::UNAUTHORIZED,
                body,
                "http://h",
                "GET /x",
                token_set,
            );
            assert!(e.message.contains("GUESTLIST_TOKEN"), "{}", e.message);
            assert!(!e.message.contains("Authorization"), "{}", e.message);
            assert_eq!(e.exit, Exit::Refused);
        }
    }

    #[test]
    fn an_answer_without_a_guestlist_error_body_is_from_another_server() {
        for body in ["", "<html>Not Found</html>", r#"{"detail":"nope"}"#] {
            let e = answer(
                StatusCode::NOT_FOUND,
                body,
                "http://h:1",
                "GET /v1/campaigns",
                false,
            );
            assert!(
                e.message
                    .starts_with("the server at http://h:1 is not guestlist"),
                "{}",
                e.message
            );
            assert_eq!(e.exit, Exit::NoAnswer);
        }
    }

    #[test]
    fn server_failures_are_no_answer_and_rejections_are_refused() {
        let body = |code: &str| format!(r#"{{"error":"{code}","message":"m"}}"#);
        let cases = [
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                Exit::NoAnswer,
            ),
            (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                Exit::NoAnswer,
            ),
            (StatusCode::CONFLICT, "campaign_exists", Exit::Refused),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "audience_too_large",
                Exit::Refused,
            ),
        ];
        for (status, code, exit) in cases {
            assert_eq!(
                answer(status, &body(code), "b", "r", true).exit,
                exit,
                "{code}"
            );
        }
    }
}
