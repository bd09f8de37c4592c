//! The configured tokens and who presented one.
//!
//! Tokens are held as SHA-256 digests and compared in constant time; they
//! are never logged. Each admin token has a name, which becomes the
//! request's [`Actor`]: the name the audit log and the history record.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

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

    /// Whether `presented` is the check token.
    pub fn is_check_token(&self, presented: &[u8]) -> bool {
        self.check
            .as_ref()
            .is_some_and(|t| bool::from(t.ct_eq(&digest(presented))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
