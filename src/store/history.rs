//! Audience history: the last `--keep-versions` versions of each audience,
//! kept by every store so a bad upload can be rolled back.
//!
//! Each version is recorded when it is published, with who made it and how.
//! A rollback publishes a kept version's audience again as a new version,
//! through the same fenced path as any write. The backends keep the
//! audiences themselves (the embedded store in its database, Redis as the
//! snapshots it already writes per version); this file holds what they
//! share: the record and the rule for which versions stay.

use serde::{Deserialize, Serialize};

/// The default of `--keep-versions`.
pub const DEFAULT_KEEP_VERSIONS: usize = 5;
/// The most `--keep-versions` allows: every kept version holds a whole
/// audience (in Redis, one snapshot), so the history is bounded by the
/// largest audience times this.
pub const MAX_KEEP_VERSIONS: usize = 50;

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VersionAction {
    /// The whole audience replaced by an upload.
    Replaced,
    /// IDs added by an upload.
    Added,
    /// IDs removed by an upload.
    Removed,
    /// A kept version's audience published again (`restored` says which).
    RolledBack,
    /// Published before this store recorded history: who and how are unknown.
    Unrecorded,
}

impl VersionAction {
    /// As people read it, for the portal.
    pub fn describe(self) -> &'static str {
        match self {
            VersionAction::Replaced => "replaced",
            VersionAction::Added => "IDs added",
            VersionAction::Removed => "IDs removed",
            VersionAction::RolledBack => "rolled back",
            VersionAction::Unrecorded => "published before history was kept",
        }
    }
}

/// One kept audience version: which, how big, when, who and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AudienceVersion {
    /// The version number.
    pub version: u64,
    /// IDs in this version's audience.
    pub audience_size: u64,
    /// When it was published, RFC 3339 in UTC.
    pub at: String,
    /// The name of the admin token (or portal session) that made it.
    pub by: String,
    /// How it was made.
    pub action: VersionAction,
    /// For a rollback, the version whose audience it restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<u64>,
}

/// Who asks for an audience change, and for a rollback which version:
/// what the version it makes records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Who asks (a token's name).
    pub by: String,
    /// How the change makes its version.
    pub action: VersionAction,
    /// For a rollback, the version it restores.
    pub restored: Option<u64>,
}

impl Origin {
    /// A change by `by`, of kind `action`.
    pub fn new(by: &str, action: VersionAction) -> Origin {
        Origin {
            by: by.to_string(),
            action,
            restored: None,
        }
    }

    /// The record of the version this change publishes.
    pub fn record(
        &self,
        version: u64,
        audience_size: u64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> AudienceVersion {
        AudienceVersion {
            version,
            audience_size,
            at: crate::domain::fmt_time(at),
            by: self.by.clone(),
            action: self.action,
            restored: self.restored,
        }
    }
}

/// Refuses a change made against `expected` when `live` is the live version.
pub fn check_live(
    campaign: &str,
    live: u64,
    expected: Option<u64>,
) -> Result<(), super::StoreError> {
    match expected {
        Some(expected) if expected != live => Err(super::StoreError::Moved {
            campaign: campaign.to_string(),
            live,
            expected,
        }),
        _ => Ok(()),
    }
}

/// Splits the history after publishing `newest` into what stays (newest
/// first, at most `keep`) and what falls off. `kept` may come in any order
/// and may already hold `newest`'s version (a retried commit), which is
/// replaced rather than counted twice.
pub fn retain<T>(
    kept: Vec<T>,
    newest: T,
    keep: usize,
    version: impl Fn(&T) -> u64,
) -> (Vec<T>, Vec<T>) {
    let newest_version = version(&newest);
    let mut all: Vec<T> = kept
        .into_iter()
        .filter(|t| version(t) != newest_version)
        .collect();
    all.push(newest);
    all.sort_by_key(|t| std::cmp::Reverse(version(t)));
    let dropped = all.split_off(keep.max(1).min(all.len()));
    (all, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_versions_stay_and_the_oldest_fall_off() {
        let (kept, dropped) = retain(vec![3, 1, 2, 4, 5], 6, 5, |v| *v);
        assert_eq!(kept, [6, 5, 4, 3, 2]);
        assert_eq!(dropped, [1]);
        let (kept, dropped) = retain(vec![2, 1], 3, 5, |v| *v);
        assert_eq!((kept, dropped), (vec![3, 2, 1], vec![]));
        let (kept, dropped) = retain(vec![7], 8, 1, |v| *v);
        assert_eq!((kept, dropped), (vec![8], vec![7]));
    }

    #[test]
    fn a_version_recorded_twice_counts_once() {
        let (kept, dropped) = retain(vec![(5, "old"), (4, "a")], (5, "new"), 2, |v| v.0);
        assert_eq!(kept, [(5, "new"), (4, "a")]);
        assert!(dropped.is_empty());
    }

    #[test]
    fn records_serialize_with_their_action_in_snake_case() {
        let mut origin = Origin::new("ops", VersionAction::RolledBack);
        origin.restored = Some(3);
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .to_utc();
        let json = serde_json::to_value(origin.record(7, 10, at)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version": 7, "audience_size": 10, "at": "2026-11-27T10:00:00Z",
                "by": "ops", "action": "rolled_back", "restored": 3})
        );
    }
}
