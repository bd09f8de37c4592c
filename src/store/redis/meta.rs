//! A campaign's `meta` hash: the campaign itself plus the protocol's
//! bookkeeping (incarnation, revision, live generation and snapshot, a
//! pending in-place change), parsed strictly so a malformed hash is
//! reported, never half-read.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::keys::{self, Stamp};
use crate::domain::{Campaign, Design, fmt_time};
use crate::ids::IdType;
use crate::store::{StoreError, StoreResult};

/// One campaign as stored in Redis. Cheap to share: the catalog and the
/// near-cache hold it behind an `Arc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignMeta {
    /// The campaign as the API shows it.
    pub campaign: Campaign,
    /// Set at create; a re-created campaign gets a new one, so nothing of
    /// its predecessor (snapshots, per-user fields, cache entries) can
    /// answer for it.
    pub incarnation: Stamp,
    /// Bumped by every commit; the fence a writer's commit checks.
    pub revision: u64,
    /// The live generation: the stamp `per-user` fields carry. Changes only
    /// on a rebuild.
    pub generation: Stamp,
    /// The live version's snapshot stamp (meaningless while version is 0).
    pub snapshot: Stamp,
    /// A `per-user` in-place change to this version is half-written.
    pub pending: Option<u64>,
}

impl CampaignMeta {
    /// A campaign as created: version 0, no audience, no snapshot.
    pub fn new(campaign: Campaign) -> CampaignMeta {
        CampaignMeta {
            campaign,
            incarnation: Stamp::random(),
            revision: 1,
            generation: Stamp::random(),
            snapshot: Stamp::default(),
            pending: None,
        }
    }

    /// The campaign's id.
    pub fn id(&self) -> &str {
        &self.campaign.id
    }

    /// Every field, as `create.lua` writes them.
    pub(crate) fn fields(&self) -> Vec<(&'static str, String)> {
        let c = &self.campaign;
        vec![
            (keys::FIELD_NAME, c.name.clone()),
            (keys::FIELD_STARTS_AT, fmt_time(c.starts_at)),
            (keys::FIELD_ENDS_AT, fmt_time(c.ends_at)),
            (keys::FIELD_DESIGN, c.design.as_str().to_string()),
            (keys::FIELD_ID_TYPE, c.user_id_type.as_str().to_string()),
            (keys::FIELD_SIZE, c.audience_size.to_string()),
            (keys::FIELD_VERSION, c.version.to_string()),
            (keys::FIELD_CREATED_AT, fmt_time(c.created_at)),
            (keys::FIELD_UPDATED_AT, fmt_time(c.updated_at)),
            (keys::FIELD_INCARNATION, self.incarnation.to_string()),
            (keys::FIELD_REVISION, self.revision.to_string()),
            (keys::FIELD_GENERATION, self.generation.to_string()),
            (keys::FIELD_SNAPSHOT, self.snapshot.to_string()),
        ]
    }

    /// Parses a `meta` hash; any missing or malformed field is an error
    /// naming the campaign and the field.
    pub fn parse(id: &str, meta: &HashMap<String, String>) -> StoreResult<CampaignMeta> {
        let bad = |name: &str, why: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("campaign {id:?} field {name:?}: {why}"))
        };
        let field = |name: &str| -> StoreResult<&str> {
            meta.get(name)
                .map(String::as_str)
                .ok_or_else(|| bad(name, &"missing"))
        };
        let time = |name: &str| -> StoreResult<DateTime<Utc>> {
            DateTime::parse_from_rfc3339(field(name)?)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| bad(name, &e))
        };
        let number =
            |name: &str| -> StoreResult<u64> { field(name)?.parse().map_err(|e| bad(name, &e)) };
        let stamp = |name: &str| -> StoreResult<Stamp> {
            Stamp::parse(field(name)?).ok_or_else(|| bad(name, &"not 16 hex digits"))
        };
        let design = field(keys::FIELD_DESIGN)?;
        Ok(CampaignMeta {
            campaign: Campaign {
                id: id.to_string(),
                name: field(keys::FIELD_NAME)?.to_string(),
                starts_at: time(keys::FIELD_STARTS_AT)?,
                ends_at: time(keys::FIELD_ENDS_AT)?,
                design: Design::parse(design).ok_or_else(|| bad(keys::FIELD_DESIGN, &design))?,
                user_id_type: match meta.get(keys::FIELD_ID_TYPE) {
                    None => IdType::Integer,
                    Some(t) => IdType::parse(t).ok_or_else(|| bad(keys::FIELD_ID_TYPE, t))?,
                },
                audience_size: number(keys::FIELD_SIZE)?,
                version: number(keys::FIELD_VERSION)?,
                created_at: time(keys::FIELD_CREATED_AT)?,
                updated_at: time(keys::FIELD_UPDATED_AT)?,
            },
            incarnation: stamp(keys::FIELD_INCARNATION)?,
            revision: number(keys::FIELD_REVISION)?,
            generation: stamp(keys::FIELD_GENERATION)?,
            snapshot: stamp(keys::FIELD_SNAPSHOT)?,
            pending: meta
                .get(keys::FIELD_PENDING)
                .map(|v| v.parse().map_err(|e| bad(keys::FIELD_PENDING, &e)))
                .transpose()?,
        })
    }
}

/// The fields a check reads with the probe, to know which state it probed.
pub(crate) const IDENTITY: [&str; 4] = [
    keys::FIELD_INCARNATION,
    keys::FIELD_REVISION,
    keys::FIELD_GENERATION,
    keys::FIELD_VERSION,
];

/// The reply to `HMGET meta` of [`IDENTITY`]: `None` when the campaign
/// does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub incarnation: Stamp,
    pub revision: u64,
    pub generation: Stamp,
    pub version: u64,
}

impl Identity {
    pub(crate) fn parse(id: &str, reply: Vec<Option<String>>) -> StoreResult<Option<Identity>> {
        let bad = || StoreError::Corrupt(format!("campaign {id:?} has malformed metadata"));
        let [inc, rev, generation, version]: [Option<String>; 4] =
            reply.try_into().map_err(|_| bad())?;
        let Some(inc) = inc else { return Ok(None) };
        let parse_u64 = |v: Option<String>| v.and_then(|v| v.parse().ok()).ok_or_else(bad);
        Ok(Some(Identity {
            incarnation: Stamp::parse(&inc).ok_or_else(bad)?,
            revision: parse_u64(rev)?,
            generation: generation
                .as_deref()
                .and_then(Stamp::parse)
                .ok_or_else(bad)?,
            version: parse_u64(version)?,
        }))
    }

    pub(crate) fn of(meta: &CampaignMeta) -> Identity {
        Identity {
            incarnation: meta.incarnation,
            revision: meta.revision,
            generation: meta.generation,
            version: meta.campaign.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CampaignMeta {
        let now = Utc::now();
        CampaignMeta::new(Campaign {
            id: "c".into(),
            name: "C".into(),
            starts_at: now,
            ends_at: now,
            design: Design::PerUser,
            user_id_type: Default::default(),
            audience_size: 0,
            version: 0,
            created_at: now,
            updated_at: now,
        })
    }

    #[test]
    fn meta_round_trips_through_its_fields() {
        let meta = sample();
        let hash: HashMap<String, String> = meta
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let back = CampaignMeta::parse("c", &hash).unwrap();
        assert_eq!(back.incarnation, meta.incarnation);
        assert_eq!(back.campaign.design, Design::PerUser);
        assert_eq!(back.pending, None);
    }

    #[test]
    fn a_malformed_field_is_named_in_the_error() {
        let mut hash: HashMap<String, String> = sample()
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        hash.insert("starts_at".into(), "yesterday".into());
        let e = CampaignMeta::parse("c", &hash).unwrap_err().to_string();
        assert!(e.contains("starts_at"), "{e}");
        hash.remove("incarnation");
        hash.insert("starts_at".into(), "2026-01-01T00:00:00Z".into());
        let e = CampaignMeta::parse("c", &hash).unwrap_err().to_string();
        assert!(e.contains("incarnation"), "{e}");
    }
}
