//! What one check runs against: the story's JSON key, a store design called
//! from the bench, the near-cache in process, or a `guestlist serve` over
//! HTTP. Each answer is compared with the audience, so a fast wrong answer
//! counts as an error, not as throughput.

use serde::Deserialize;

use super::cluster::BenchConn;
use super::plan::{BenchDesign, Via, typed_text};
use crate::ids::{IdType, User};
use crate::lookup::{CheckError as LookupError, Checker, Source};
use crate::store::redis::RedisStore;
use crate::store::{Store, StoreError};

/// Where checks go for one run.
pub(super) struct Target {
    pub(super) design: BenchDesign,
    pub(super) via: Via,
    pub(super) path: Path,
    /// What the drawn integers stand for (see `plan::typed_text`).
    pub(super) id_type: IdType,
}

pub(super) enum Path {
    /// The story's original: one key holding the whole list as JSON.
    Json { conn: BenchConn, key: String },
    /// A store design, called the way the service calls it.
    Store { store: RedisStore, campaign: String },
    /// The near-cache and its store fallback, as the library runs them.
    InProcess { lookup: Checker, campaign: String },
    /// `GET /v1/campaigns/{id}/members/{user}` on a running server.
    Http {
        client: reqwest::Client,
        /// `{base}/v1/campaigns/{id}/members/`; the user goes last.
        prefix: String,
        /// The near-cache must answer (`"source": "cache"`), or the run
        /// would be measuring the store behind it.
        from_cache: bool,
    },
}

#[derive(Debug)]
pub(super) enum CheckError {
    Timeout,
    Failed,
    WrongAnswer,
}

#[derive(Deserialize)]
struct Answer {
    member: bool,
    source: String,
}

impl Target {
    /// Whether checks finish without waiting on I/O, so the load generator
    /// can run them inline instead of spawning a task each.
    pub(super) fn in_process(&self) -> bool {
        matches!(self.path, Path::InProcess { .. })
    }

    /// The user drawn integer `user` stands for, as a request names it.
    fn user(&self, user: u64) -> User {
        match typed_text(self.id_type, user) {
            Some(text) => User::parse(&text).expect("a valid ID"),
            None => User::from_int(user),
        }
    }

    pub(super) async fn check(&self, user: u64) -> Result<bool, CheckError> {
        match &self.path {
            Path::Json { conn, key } => {
                // Exactly what the original login path did: fetch everything,
                // parse everything, scan until found.
                let bytes: Vec<u8> = conn.query(redis::cmd("GET").arg(key)).await.map_err(|e| {
                    if e.is_timeout() {
                        CheckError::Timeout
                    } else {
                        CheckError::Failed
                    }
                })?;
                match typed_text(self.id_type, user) {
                    None => {
                        let ids: Vec<u64> =
                            serde_json::from_slice(&bytes).map_err(|_| CheckError::Failed)?;
                        Ok(ids.contains(&user))
                    }
                    Some(text) => {
                        let ids: Vec<String> =
                            serde_json::from_slice(&bytes).map_err(|_| CheckError::Failed)?;
                        Ok(ids.contains(&text))
                    }
                }
            }
            Path::Store { store, campaign } => {
                match store.is_member(campaign, &self.user(user)).await {
                    Ok((_, member)) => Ok(member),
                    Err(StoreError::Timeout(_)) => Err(CheckError::Timeout),
                    Err(_) => Err(CheckError::Failed),
                }
            }
            Path::InProcess { lookup, campaign } => {
                match lookup.is_member(campaign, &self.user(user)).await {
                    // A check the cache could not answer is not a cache check.
                    Ok(m) if m.source == Source::Cache => Ok(m.member),
                    Ok(_) => Err(CheckError::Failed),
                    Err(LookupError::Store(StoreError::Timeout(_))) => Err(CheckError::Timeout),
                    Err(_) => Err(CheckError::Failed),
                }
            }
            Path::Http {
                client,
                prefix,
                from_cache,
            } => {
                let mut url = String::with_capacity(prefix.len() + 40);
                url.push_str(prefix);
                match typed_text(self.id_type, user) {
                    // Typed texts hold only characters a path segment may.
                    Some(text) => url.push_str(&text),
                    None => url.push_str(itoa::Buffer::new().format(user)),
                }
                let response = client.get(url).send().await.map_err(|e| {
                    if e.is_timeout() {
                        CheckError::Timeout
                    } else {
                        CheckError::Failed
                    }
                })?;
                if !response.status().is_success() {
                    return Err(CheckError::Failed);
                }
                let answer: Answer = response.json().await.map_err(|_| CheckError::Failed)?;
                if *from_cache && answer.source != "cache" {
                    return Err(CheckError::Failed);
                }
                Ok(answer.member)
            }
        }
    }
}
