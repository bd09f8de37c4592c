//! The login path in one place: answer from the near-cache when it holds the
//! campaign and its copy is confirmed, from the store otherwise, and say which
//! (and how fresh) in the answer. A stale cached copy is used only when the
//! store cannot answer, and then only if the stale policy allows it. The HTTP handlers and the library [`crate::client::Client`] both
//! go through [`Checker`], so they behave the same.

// Part of the library a login service embeds: every public item says what it is.
#![warn(missing_docs)]

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use crate::ids::{User, UserIdValue};
use crate::nearcache::{NearCache, StalePolicy};
use crate::store::{Store, StoreError};

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The in-process near-cache: no network.
    Cache,
    /// The store (Redis or embedded).
    Store,
    /// A replica of the store (`--read-from-replicas` on Redis Cluster):
    /// behind its primary by the replication delay, usually milliseconds,
    /// unbounded while the replica is cut off from it.
    Replica,
}

/// "Is this user in this campaign?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Membership {
    /// The campaign asked about.
    pub campaign: String,
    /// The user asked about, in the campaign's canonical spelling (a
    /// number for integer campaigns).
    pub user_id: UserIdValue,
    /// Whether the user is in the campaign's audience.
    pub member: bool,
    /// Whether the campaign is active now.
    pub active: bool,
    /// Who answered: the near-cache or the store.
    pub source: Source,
    /// The cached answer is older than the staleness bound.
    pub stale: bool,
}

/// "Which active campaigns is this user in?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct UserCampaigns {
    /// The user asked about: a number when it reads as one.
    pub user_id: UserIdValue,
    /// The active campaigns whose audience holds the user, sorted.
    pub campaigns: Vec<String>,
    /// Who answered: the near-cache or the store.
    pub source: Source,
    /// Whether the answer rests on a copy past the staleness bound.
    pub stale: bool,
}

/// Why a check could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The store failed (or does not know the campaign).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The near-cache's answer is past its staleness bound and the policy is
    /// to refuse rather than serve it.
    #[error(
        "the cached audience of {0:?} has not been confirmed within the staleness bound and the store cannot answer; retry shortly"
    )]
    Stale(String),
    /// "Which campaigns" rests on this instance's list of campaigns, which
    /// has not been confirmed against the store within the bound, and the
    /// policy is to refuse.
    #[error(
        "the list of campaigns has not been confirmed against the store within the staleness bound; retry shortly"
    )]
    StaleList,
    /// The user cannot be an ID of the campaign's type (the message says
    /// why): a caller's bug, not a "no".
    #[error("{0}")]
    BadUser(String),
}

/// `user` as an ID of `campaign`'s type, shown as answers show it.
fn user_of(campaign: &crate::domain::Campaign, user: &User) -> Result<UserIdValue, CheckError> {
    user.key_for(campaign.user_id_type)
        .map(|key| UserIdValue::from(&key))
        .map_err(|why| {
            CheckError::BadUser(format!(
                "{}; campaign {:?} takes {} user ids",
                why.message(user.text().as_bytes()),
                campaign.id,
                campaign.user_id_type
            ))
        })
}

/// `user` as a cached answer shows it: as read by the campaign's type (a
/// UUID in canonical form), like the store's answers. The cache answers
/// only users of the campaign's type, so the fallback to the user as sent
/// is never taken; it keeps this total.
fn read_as(user: &User, id_type: crate::ids::IdType) -> UserIdValue {
    user.key(id_type)
        .map(|key| UserIdValue::from(&key))
        .unwrap_or_else(|| user.value())
}

/// Whether the store failed to answer at all (so a stale cached answer may
/// stand in), rather than answering something definite such as "no such
/// campaign", which an old cached copy must never contradict.
fn store_unreachable(e: &StoreError) -> bool {
    matches!(e, StoreError::Timeout(_) | StoreError::Unavailable(_))
}

/// Answers checks from the near-cache or the store. Cheap to clone.
#[derive(Clone)]
pub struct Checker {
    store: Arc<dyn Store>,
    cache: Option<NearCache>,
}

impl Checker {
    /// Checks through `cache` when there is one, else `store`.
    pub fn new(store: Arc<dyn Store>, cache: Option<NearCache>) -> Checker {
        Checker { store, cache }
    }

    /// The near-cache, when there is one.
    pub fn cache(&self) -> Option<&NearCache> {
        self.cache.as_ref()
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store just answered that `campaign` does not exist: the cache
    /// must not answer for it as fresh after this.
    fn observe_error(&self, campaign: &str, e: &StoreError) {
        if let (Some(cache), StoreError::NotFound(_)) = (&self.cache, e) {
            cache.observe_gone(campaign);
        }
    }

    /// The store just answered from `campaign`'s current state: the cache
    /// must not answer from an older one after this.
    fn observe(&self, campaign: &crate::domain::Campaign) {
        if let Some(cache) = &self.cache {
            cache.observe(&campaign.id, campaign.version);
        }
    }

    /// Where a store answer comes from: the store, or one of its replicas.
    fn store_source(&self) -> Source {
        if self.store.answers_from_replicas() {
            Source::Replica
        } else {
            Source::Store
        }
    }

    /// Applies the stale policy to a cached answer: may it be served?
    fn may_serve(&self, stale: bool) -> bool {
        !stale
            || self
                .cache
                .as_ref()
                .is_none_or(|c| c.options().on_stale == StalePolicy::Serve)
    }

    /// Is `user` in `campaign`'s audience? The near-cache answers when it holds the campaign, else the store.
    ///
    /// The near-cache reads the user as the campaign's type; a user that
    /// cannot be of that type is sent to the store, which refuses it.
    pub async fn is_member(&self, campaign: &str, user: &User) -> Result<Membership, CheckError> {
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.is_member_named(campaign, user));
        if let Some(hit) = cached.filter(|h| !h.stale) {
            let now = Utc::now();
            return Ok(Membership {
                campaign: campaign.to_string(),
                user_id: read_as(user, hit.user_id_type),
                member: hit.member,
                active: hit.is_active_at(now),
                source: Source::Cache,
                stale: false,
            });
        }
        // Not cached, or cached but unconfirmed: the store answers if it can;
        // a stale cached answer is the fallback, subject to the policy.
        match self.store.is_member(campaign, user).await {
            Ok((c, member)) => {
                self.observe(&c);
                Ok(Membership {
                    user_id: user_of(&c, user)?,
                    campaign: c.id.clone(),
                    member,
                    active: c.is_active_at(Utc::now()),
                    source: self.store_source(),
                    stale: false,
                })
            }
            Err(e) => match cached.filter(|_| store_unreachable(&e)) {
                None => {
                    self.observe_error(campaign, &e);
                    Err(e.into())
                }
                Some(hit) if self.may_serve(true) => {
                    let now = Utc::now();
                    Ok(Membership {
                        campaign: campaign.to_string(),
                        user_id: read_as(user, hit.user_id_type),
                        member: hit.member,
                        active: hit.is_active_at(now),
                        source: Source::Cache,
                        stale: true,
                    })
                }
                Some(_) => Err(CheckError::Stale(campaign.to_string())),
            },
        }
    }

    /// One answer per user, in order (the user as the campaign reads it, a
    /// UUID in canonical form, and whether it is a member), plus where they
    /// came from.
    pub async fn are_members(
        &self,
        campaign: &str,
        users: &[User],
    ) -> Result<(Vec<(UserIdValue, bool)>, Source, bool), CheckError> {
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.are_members(campaign, users))
            .map(|batch| {
                let answers = users
                    .iter()
                    .zip(batch.members)
                    .map(|(user, member)| (read_as(user, batch.user_id_type), member))
                    .collect::<Vec<_>>();
                (answers, batch.stale)
            });
        if let Some((answers, false)) = cached {
            return Ok((answers, Source::Cache, false));
        }
        match self.store.are_members(campaign, users).await {
            Ok((c, members)) => {
                self.observe(&c);
                // Every store answers each user; a short answer would
                // leave users unchecked and unanswered.
                debug_assert_eq!(members.len(), users.len(), "one answer per user");
                let answers = users
                    .iter()
                    .zip(members)
                    .map(|(user, member)| Ok((user_of(&c, user)?, member)))
                    .collect::<Result<_, CheckError>>()?;
                Ok((answers, self.store_source(), false))
            }
            Err(e) => match cached.filter(|_| store_unreachable(&e)) {
                Some((answers, _)) if self.may_serve(true) => Ok((answers, Source::Cache, true)),
                Some(_) => Err(CheckError::Stale(campaign.to_string())),
                None => {
                    self.observe_error(campaign, &e);
                    Err(e.into())
                }
            },
        }
    }

    /// The active campaigns whose audience holds `user`, sorted.
    pub async fn campaigns_for(&self, user: &User) -> Result<UserCampaigns, CheckError> {
        let (mut lists, source, stale) =
            self.campaigns_for_many(std::slice::from_ref(user)).await?;
        Ok(UserCampaigns {
            user_id: user.value(),
            campaigns: lists.pop().unwrap_or_default(),
            source,
            stale,
        })
    }

    /// Active campaigns per user, in order, plus where they came from. The
    /// cache answers only when it holds every campaign that could be active.
    pub async fn campaigns_for_many(
        &self,
        users: &[User],
    ) -> Result<(Vec<Vec<String>>, Source, bool), CheckError> {
        let now = Utc::now();
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.campaigns_for_many(users, now));
        if let Some((lists, false)) = cached {
            return Ok((lists, Source::Cache, false));
        }
        match self.store.campaigns_for_many(users, now).await {
            // The store's list of campaigns is a copy too: past the bound it
            // is stale like a cache entry, and the same policy applies.
            Ok(lists) if self.store.catalog_is_stale() => {
                if self.may_serve(true) {
                    Ok((lists, self.store_source(), true))
                } else {
                    Err(CheckError::StaleList)
                }
            }
            Ok(lists) => Ok((lists, self.store_source(), false)),
            Err(e) => match cached.filter(|_| store_unreachable(&e)) {
                Some((lists, _)) if self.may_serve(true) => Ok((lists, Source::Cache, true)),
                Some(_) => Err(CheckError::Stale("one or more campaigns".into())),
                None => Err(e.into()),
            },
        }
    }
}
