//! The login path against Redis: one campaign's check, answered for exactly
//! one committed version, and "which active campaigns is each user in?",
//! answered against the catalog in one batch.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use redis::Value;

use super::RedisStore;
use super::batch::Batch;
use super::coalesce::Read;
use super::design;
use super::meta::{self, CampaignMeta, Identity};
use crate::domain::{Campaign, Design};
use crate::ids::{IdType, User};
use crate::store::{StoreError, StoreResult};

/// The users that can be IDs of `id_type`, as the canonical texts Redis
/// holds, with each one's place in `users`. The others are in no campaign
/// of that type and are never sent to Redis.
fn keyed(users: &[User], id_type: IdType) -> (Vec<usize>, Vec<String>) {
    users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| Some((i, u.key(id_type)?.text().into_owned())))
        .unzip()
}

/// Spreads the answers for the keyed users back over all of `count` users.
fn spread(count: usize, places: &[usize], answers: Vec<bool>) -> Vec<bool> {
    let mut all = vec![false; count];
    for (&i, answer) in places.iter().zip(answers) {
        all[i] = answer;
    }
    all
}

impl RedisStore {
    /// Probes `users` in campaign `id` together with its metadata, so the
    /// answer is of exactly one version: in one MULTI when the design's keys
    /// share the campaign's slot, else with a metadata read ahead of the
    /// probe (in one round trip on a single Redis, one before it on a
    /// cluster) that names the state the probe is read at.
    pub(crate) async fn probe(
        &self,
        id: &str,
        users: &[User],
    ) -> StoreResult<(Campaign, Vec<bool>)> {
        let mut guess = match self.catalog().campaigns.get(id).cloned() {
            Some(m) => m,
            None => Arc::new(self.fetch_uncatalogued(id).await?),
        };
        for _ in 0..3 {
            let design = self.design(guess.campaign.design);
            // The type is fixed for the incarnation, which the probe's
            // identity read confirms below.
            let (places, texts) = keyed(users, guess.campaign.user_id_type);
            let check = &self.inner.check;
            let mut pipe = Batch::new();
            if design.probe_in_campaign_slot() {
                pipe.atomic();
            }
            let mut identify = redis::cmd("HMGET");
            identify.arg(self.keys().meta(id)).arg(&meta::IDENTITY[..]);
            // On a cluster the metadata and the users' keys live on other
            // nodes and a batch's parts run in parallel: the metadata is
            // read first, so the probe is never older than the state named.
            // Concurrent checks of the campaign share that read (see
            // `coalesce`), so its master is not every check's hot key.
            let ahead: Option<Vec<Option<String>>> =
                if check.is_cluster() && !design.probe_in_campaign_slot() {
                    Some(self.shared_identity(id).await?)
                } else {
                    pipe.add_command(identify);
                    None
                };
            design.queue_probe(&mut pipe, id, &texts);
            let replies: Vec<Value> = check.pipe("check", &pipe).await?;
            let mut replies = replies.into_iter();
            let identity = match ahead {
                Some(read) => read,
                None => design::parse(design::next_reply(&mut replies)?)?,
            };
            let identity = Identity::parse(id, identity)?;
            let Some(identity) = identity else {
                self.forget(id, guess.incarnation);
                return Err(StoreError::NotFound(id.to_string()));
            };
            if identity.incarnation == guess.incarnation {
                let answers = design.read_probe(&mut replies, id, &identity, &texts)?;
                let answers = spread(users.len(), &places, answers);
                let campaign = if identity.revision == guess.revision {
                    guess.campaign.clone()
                } else {
                    // Newer than this instance's catalog: the answers are of
                    // that state; learn its window too.
                    let fresh = self.fetch_uncatalogued(id).await?;
                    fresh.campaign.clone()
                };
                return Ok((campaign, answers));
            }
            // Re-created meanwhile, perhaps with another design: probe again.
            guess = Arc::new(self.fetch_uncatalogued(id).await?);
        }
        Err(StoreError::Busy(id.to_string()))
    }

    /// Campaign `id`'s identity fields, from a read that started after this
    /// call and that concurrent callers share.
    async fn shared_identity(&self, id: &str) -> StoreResult<Vec<Option<String>>> {
        let store = self.clone();
        let key = self.keys().meta(id);
        let read: Read<Vec<Option<String>>> = Arc::new(move || {
            let store = store.clone();
            let mut identify = redis::cmd("HMGET");
            identify.arg(&key).arg(&meta::IDENTITY[..]);
            Box::pin(async move { store.inner.check.cmd("check", &identify).await })
        });
        self.inner
            .identities
            .get(id, read, self.inner.options.check_timeout)
            .await
    }

    /// Reads one campaign this instance's catalog lacks or has old, and
    /// remembers it, or that it is absent.
    async fn fetch_uncatalogued(&self, id: &str) -> StoreResult<CampaignMeta> {
        let started = Instant::now();
        match self.load(&self.inner.check, id).await {
            Ok(meta) => {
                self.remember_read(meta.clone(), started);
                Ok(meta)
            }
            Err(e @ StoreError::NotFound(_)) => {
                self.forget_absent(id);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The batch form of "which active campaigns is each user in?": every
    /// active campaign probed in one batch against the catalog's states.
    pub(crate) async fn campaigns_for_many_at(
        &self,
        users: &[User],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Vec<String>>> {
        let catalog = self.catalog();
        if catalog.reconciled_at.is_none() {
            return Err(StoreError::Unavailable(
                "the campaign catalog has not been loaded from Redis yet".into(),
            ));
        }
        let mut active: Vec<&CampaignMeta> = catalog
            .campaigns
            .values()
            .map(Arc::as_ref)
            .filter(|m| m.campaign.is_active_at(now))
            .collect();
        active.sort_by(|a, b| a.id().cmp(b.id()));
        let mut result = vec![Vec::new(); users.len()];
        if active.is_empty() {
            return Ok(result);
        }
        // One round trip for every campaign and every user, grouped by design
        // so a design can answer for all its campaigns at once, and by ID
        // type, since each type reads the users as its own texts.
        let groups: Vec<Group> = Design::ALL
            .into_iter()
            .flat_map(|d| IdType::ALL.into_iter().map(move |t| (d, t)))
            .filter_map(|(design, id_type)| {
                let campaigns: Vec<&CampaignMeta> = active
                    .iter()
                    .copied()
                    .filter(|m| m.campaign.design == design && m.campaign.user_id_type == id_type)
                    .collect();
                let (places, texts) = keyed(users, id_type);
                (!campaigns.is_empty() && !texts.is_empty()).then_some(Group {
                    design,
                    campaigns,
                    places,
                    texts,
                })
            })
            .collect();
        let mut pipe = Batch::new();
        for g in &groups {
            self.design(g.design)
                .queue_campaigns_for(&mut pipe, &g.campaigns, &g.texts);
        }
        // Designs that probe live keys answer from the newest state, which
        // the catalog may not know yet. Their identities are read after the
        // probes, so they are at least as new as what was probed; the
        // catalog learns them before the answer is returned, and so nothing
        // this instance answers next (the near-cache included) goes back.
        let live: Vec<&CampaignMeta> = groups
            .iter()
            .filter(|g| self.design(g.design).probe_in_campaign_slot())
            .flat_map(|g| g.campaigns.iter().copied())
            .collect();
        for m in &live {
            pipe.cmd("HMGET")
                .arg(self.keys().meta(m.id()))
                .arg(&meta::IDENTITY[..]);
        }
        let replies: Vec<Value> = if pipe.is_empty() {
            Vec::new()
        } else {
            self.inner.check.pipe("check", &pipe).await?
        };
        let mut replies = replies.into_iter();
        let mut hits: Vec<(&str, Vec<bool>)> = Vec::new();
        for g in &groups {
            let rows =
                self.design(g.design)
                    .read_campaigns_for(&mut replies, &g.campaigns, &g.texts)?;
            let rows = rows
                .into_iter()
                .map(|row| spread(users.len(), &g.places, row));
            hits.extend(g.campaigns.iter().map(|m| m.id()).zip(rows));
        }
        let mut retyped: Vec<&str> = Vec::new();
        for m in live {
            let reply = design::parse(design::next_reply(&mut replies)?)?;
            match Identity::parse(m.id(), reply)? {
                None => self.forget(m.id(), m.incarnation),
                Some(seen) if seen != Identity::of(m) => {
                    // Learnt before answering; a failure here only delays it.
                    let started = Instant::now();
                    if let Ok(fresh) = self.load(&self.inner.check, m.id()).await {
                        // Re-created with another ID type: the users were
                        // probed as texts of the old one, so no hit counts.
                        if fresh.campaign.user_id_type != m.campaign.user_id_type {
                            retyped.push(m.id());
                        }
                        self.remember_read(fresh, started);
                    }
                }
                Some(_) => {}
            }
        }
        hits.retain(|(id, _)| !retyped.contains(id));
        hits.sort_by(|a, b| a.0.cmp(b.0));
        for (id, row) in hits {
            for (slot, member) in result.iter_mut().zip(row) {
                if member {
                    slot.push(id.to_string());
                }
            }
        }
        Ok(result)
    }
}

/// Active campaigns of one design and one ID type, and the users that can
/// be IDs of that type.
struct Group<'a> {
    design: Design,
    campaigns: Vec<&'a CampaignMeta>,
    places: Vec<usize>,
    texts: Vec<String>,
}
