//! The audience history in Redis: the kept versions' records in one hash
//! per campaign (`guestlist:{C}:versions`), their audiences in the
//! snapshots every version already writes.
//!
//! A superseded snapshot used to expire a minute after its replacement;
//! now it stays, with the live one's expiry, while its version is among the
//! last `--keep-versions`, and gets that minute when it falls off. Both the
//! record and the expiries change inside the fenced commit that publishes
//! the new version, so the history can never name a version that did not
//! publish, and a stalled writer cannot rewrite it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::RedisStore;
use super::keys::Stamp;
use super::meta::CampaignMeta;
use super::publish::{Fenced, OLD_SNAPSHOT_TTL_SECS};
use super::snapshot;
use crate::store::history::{self, AudienceVersion, Origin, VersionAction};
use crate::store::{StoreError, StoreResult};

/// One kept version: its record and the snapshot that holds its audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kept {
    #[serde(flatten)]
    pub record: AudienceVersion,
    /// The attempt stamp naming the snapshot, as 16 hex digits.
    pub snapshot: String,
}

impl Kept {
    fn stamp(&self) -> Option<Stamp> {
        Stamp::parse(&self.snapshot)
    }
}

impl RedisStore {
    /// The kept versions of `meta`'s campaign, newest first. A live version
    /// published before history was recorded is listed as `unrecorded`, so
    /// it can be rolled back to and falls off like any other. A malformed
    /// entry is left out and logged: it must not stop a write.
    pub(crate) async fn kept(&self, meta: &CampaignMeta) -> StoreResult<Vec<Kept>> {
        let id = meta.id();
        let hash: HashMap<String, String> = self
            .inner
            .admin
            .cmd(
                "versions",
                redis::cmd("HGETALL").arg(self.keys().versions(id)),
            )
            .await?;
        let mut kept: Vec<Kept> = Vec::with_capacity(hash.len() + 1);
        for (field, json) in hash {
            let parsed = serde_json::from_str::<Kept>(&json)
                .ok()
                .filter(|k| k.stamp().is_some() && field == k.record.version.to_string());
            match parsed {
                // Only what this incarnation has published so far.
                Some(k) if k.record.version <= meta.campaign.version => kept.push(k),
                Some(_) => {}
                None => {
                    tracing::warn!(campaign = %id, version = %field, "a malformed audience history entry was skipped")
                }
            }
        }
        let live = meta.campaign.version;
        if live > 0 && !kept.iter().any(|k| k.record.version == live) {
            let origin = Origin::new("unknown", VersionAction::Unrecorded);
            kept.push(Kept {
                record: origin.record(live, meta.campaign.audience_size, meta.campaign.updated_at),
                snapshot: meta.snapshot.to_string(),
            });
        }
        kept.sort_by_key(|k| std::cmp::Reverse(k.record.version));
        Ok(kept)
    }

    /// Queues the history's part of the commit publishing `next`: its
    /// record, the versions that fall off (record deleted, snapshot let go
    /// in a minute, as readers that fetched its name may still be reading),
    /// and the expiry of the rest, snapshots included.
    pub(crate) fn queue_history(
        &self,
        tx: &mut Fenced,
        next: &CampaignMeta,
        kept: Vec<Kept>,
        origin: &Origin,
        expire_at: i64,
    ) {
        let keys = self.keys();
        let id = next.id();
        let versions = keys.versions(id);
        let newest = Kept {
            record: origin.record(
                next.campaign.version,
                next.campaign.audience_size,
                next.campaign.updated_at,
            ),
            snapshot: next.snapshot.to_string(),
        };
        let (stay, drop) = history::retain(kept, newest, self.inner.options.keep_versions, |k| {
            k.record.version
        });
        for gone in &drop {
            tx.op("HDEL", &[&versions], gone.record.version);
            if let Some(stamp) = gone.stamp() {
                let key = keys.snapshot(id, next.incarnation, stamp);
                tx.op("EXPIRE", &[&key], OLD_SNAPSHOT_TTL_SECS);
            }
        }
        let mut fields: Vec<(u64, String)> = Vec::with_capacity(stay.len());
        for k in &stay {
            let json = serde_json::to_string(k).expect("a history record serializes");
            fields.push((k.record.version, json));
            // The expiry moves with every commit (an ended campaign's data
            // lives a retention from its last write): a kept version must
            // not expire before the record that offers it.
            if let Some(stamp) = k.stamp() {
                let key = keys.snapshot(id, next.incarnation, stamp);
                tx.op("EXPIREAT", &[&key], expire_at);
            }
        }
        tx.op("HSET", &[&versions], fields);
        tx.op("EXPIREAT", &[&versions], expire_at);
    }

    /// Queues the expiry of every kept version's snapshot, and of the
    /// history itself, at `expire_at` (a PATCH moved the window).
    pub(crate) fn queue_history_expiry(
        &self,
        tx: &mut Fenced,
        meta: &CampaignMeta,
        kept: &[Kept],
        expire_at: i64,
    ) {
        let keys = self.keys();
        let id = meta.id();
        for k in kept {
            if let Some(stamp) = k.stamp() {
                tx.op(
                    "EXPIREAT",
                    &[&keys.snapshot(id, meta.incarnation, stamp)],
                    expire_at,
                );
            }
        }
        tx.op("EXPIREAT", &[&keys.versions(id)], expire_at);
    }

    /// Queues the removal of the history with its campaign. The live
    /// snapshot is left to the caller (it is read once more for clean-up).
    pub(crate) fn queue_history_delete(&self, tx: &mut Fenced, meta: &CampaignMeta, kept: &[Kept]) {
        let keys = self.keys();
        let id = meta.id();
        for k in kept {
            match k.stamp() {
                Some(stamp) if stamp != meta.snapshot => {
                    tx.op(
                        "UNLINK",
                        &[&keys.snapshot(id, meta.incarnation, stamp)],
                        super::publish::NO_ARGS,
                    );
                }
                _ => {}
            }
        }
        tx.op("UNLINK", &[&keys.versions(id)], super::publish::NO_ARGS);
    }

    /// The audience of kept version `version` of `meta`'s campaign.
    pub(crate) async fn kept_audience(
        &self,
        meta: &CampaignMeta,
        kept: &[Kept],
        version: u64,
    ) -> StoreResult<crate::ids::Audience> {
        let not_kept = || StoreError::VersionNotKept {
            campaign: meta.id().to_string(),
            version,
            kept: kept.iter().map(|k| k.record.version).collect(),
        };
        let stamp = kept
            .iter()
            .find(|k| k.record.version == version)
            .and_then(Kept::stamp)
            .ok_or_else(not_kept)?;
        let key = self.keys().snapshot(meta.id(), meta.incarnation, stamp);
        // Gone only if it expired with the campaign's retention.
        let audience = snapshot::read(&self.inner.admin, &key, snapshot::decode)
            .await?
            .ok_or_else(not_kept)?;
        super::same_type(meta, audience)
    }
}

/// The records of `kept`, for the API.
pub(crate) fn records(kept: Vec<Kept>) -> Vec<AudienceVersion> {
    kept.into_iter().map(|k| k.record).collect()
}
