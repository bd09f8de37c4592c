//! What an audience change would do, computed without doing it: the
//! answer to `?dry_run=true` on replace, add and remove, and what the
//! portal shows before it publishes.
//!
//! Pure set arithmetic on the compact audiences: for integers the counts
//! come from roaring's `*_len` operations, which never build a difference, and the
//! samples stop at [`SAMPLE`] IDs, so a preview allocates next to nothing
//! whatever the audience's size.

use roaring::RoaringTreemap;
use serde::Serialize;

use crate::ids::{Audience, UserIdValue, UserKey};

/// At most this many IDs of each side of a change are shown.
pub const SAMPLE: usize = 20;

/// The kind of audience change previewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The upload becomes the audience.
    Replace,
    /// The upload's IDs join the audience.
    Add,
    /// The upload's IDs leave the audience.
    Remove,
}

/// What a change would do to an audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Preview {
    /// IDs that would join the audience.
    pub would_add: u64,
    /// IDs that would leave it.
    pub would_remove: u64,
    /// The audience's size now.
    pub current_size: u64,
    /// Its size after the change.
    pub new_size: u64,
    /// Up to [`SAMPLE`] of the IDs that would join, smallest first.
    pub would_add_sample: Vec<UserIdValue>,
    /// Up to [`SAMPLE`] of the IDs that would leave, smallest first.
    pub would_remove_sample: Vec<UserIdValue>,
}

impl Preview {
    /// The share of the current audience the change would remove (0 for
    /// an empty audience).
    pub fn removed_share(&self) -> f64 {
        if self.current_size == 0 {
            0.0
        } else {
            self.would_remove as f64 / self.current_size as f64
        }
    }
}

/// What `kind` with `upload` would do to `current`, of any ID type (an
/// upload of another type than the audience's joins and removes nothing
/// it holds; the store refuses it anyway).
///
/// CPU work of the order of the audience: run it off the async threads.
pub fn preview_audience(kind: ChangeKind, current: &Audience, upload: &Audience) -> Preview {
    if let (Audience::Integers(c), Audience::Integers(u)) = (current, upload) {
        return preview(kind, c, u);
    }
    let common = upload.intersection_len(current);
    let (would_add, would_remove) = match kind {
        ChangeKind::Replace => (upload.len() - common, current.len() - common),
        ChangeKind::Add => (upload.len() - common, 0),
        ChangeKind::Remove => (0, common),
    };
    let value = |k: UserKey| UserIdValue::from(&k);
    Sides {
        kind,
        current_size: current.len(),
        would_add,
        would_remove,
    }
    .sampled(
        || upload.keys().filter(|k| !current.contains(k)).map(value),
        || upload.keys().filter(|k| current.contains(k)).map(value),
        || current.keys().filter(|k| !upload.contains(k)).map(value),
    )
}

/// What `kind` with `upload` would do to `current`, for integer audiences.
///
/// CPU work of the order of the audience (a membership test per ID in the
/// worst case): run it off the async threads.
pub fn preview(kind: ChangeKind, current: &RoaringTreemap, upload: &RoaringTreemap) -> Preview {
    let (would_add, would_remove) = match kind {
        ChangeKind::Replace => (
            upload.difference_len(current),
            current.difference_len(upload),
        ),
        ChangeKind::Add => (upload.difference_len(current), 0),
        ChangeKind::Remove => (0, upload.intersection_len(current)),
    };
    Sides {
        kind,
        current_size: current.len(),
        would_add,
        would_remove,
    }
    .sampled(
        || {
            upload
                .iter()
                .filter(|id| !current.contains(*id))
                .map(UserIdValue::Int)
        },
        || {
            upload
                .iter()
                .filter(|id| current.contains(*id))
                .map(UserIdValue::Int)
        },
        || {
            current
                .iter()
                .filter(|id| !upload.contains(*id))
                .map(UserIdValue::Int)
        },
    )
}

/// A change's counts, before its samples are drawn.
struct Sides {
    kind: ChangeKind,
    current_size: u64,
    would_add: u64,
    would_remove: u64,
}

impl Sides {
    /// The preview, with samples drawn from what joins, what a remove
    /// takes out, and what a replace leaves behind. A side with nothing in
    /// it is not scanned.
    fn sampled<J, R, L>(
        self,
        joining: impl FnOnce() -> J,
        removed: impl FnOnce() -> R,
        leaving: impl FnOnce() -> L,
    ) -> Preview
    where
        J: Iterator<Item = UserIdValue>,
        R: Iterator<Item = UserIdValue>,
        L: Iterator<Item = UserIdValue>,
    {
        let would_add_sample = match self.would_add {
            0 => Vec::new(),
            _ => sample(joining()),
        };
        let would_remove_sample = match (self.would_remove, self.kind) {
            (0, _) => Vec::new(),
            (_, ChangeKind::Remove) => sample(removed()),
            _ => sample(leaving()),
        };
        Preview {
            would_add: self.would_add,
            would_remove: self.would_remove,
            current_size: self.current_size,
            new_size: self.current_size + self.would_add - self.would_remove,
            would_add_sample,
            would_remove_sample,
        }
    }
}

/// The first [`SAMPLE`] of `ids`. Lazy, so a sample never builds the set
/// it is taken from (which, for what a replace removes, can be the whole
/// current audience).
fn sample(ids: impl Iterator<Item = UserIdValue>) -> Vec<UserIdValue> {
    ids.take(SAMPLE).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set(ids: impl IntoIterator<Item = u64>) -> RoaringTreemap {
        ids.into_iter().collect()
    }

    #[test]
    fn each_kind_counts_and_samples_its_own_side() {
        let current = set(1..=10);
        let upload = set(8..=12);
        let replace = preview(ChangeKind::Replace, &current, &upload);
        assert_eq!(
            (replace.would_add, replace.would_remove, replace.new_size),
            (2, 7, 5)
        );
        assert_eq!(replace.would_add_sample, [11, 12]);
        assert_eq!(replace.would_remove_sample, [1, 2, 3, 4, 5, 6, 7]);

        let add = preview(ChangeKind::Add, &current, &upload);
        assert_eq!((add.would_add, add.would_remove, add.new_size), (2, 0, 12));
        assert!(add.would_remove_sample.is_empty());

        let remove = preview(ChangeKind::Remove, &current, &upload);
        assert_eq!(
            (remove.would_add, remove.would_remove, remove.new_size),
            (0, 3, 7)
        );
        assert_eq!(remove.would_remove_sample, [8, 9, 10]);
        assert!((remove.removed_share() - 0.3).abs() < 1e-9);
    }

    #[test]
    fn samples_stop_at_twenty_and_an_empty_audience_removes_nothing() {
        let big = set(0..1_000_000);
        let p = preview(ChangeKind::Replace, &RoaringTreemap::new(), &big);
        assert_eq!(p.would_add, 1_000_000);
        assert_eq!(p.would_add_sample, (0..20).collect::<Vec<_>>());
        assert_eq!(p.removed_share(), 0.0);
    }

    proptest! {
        /// The preview agrees with doing the change on a copy.
        #[test]
        fn the_preview_is_what_the_change_does(
            current in proptest::collection::btree_set(0u64..200, 0..60),
            upload in proptest::collection::btree_set(0u64..200, 0..60),
            kind in prop_oneof![Just(ChangeKind::Replace), Just(ChangeKind::Add), Just(ChangeKind::Remove)],
        ) {
            let (current, upload) = (set(current), set(upload));
            let after = match kind {
                ChangeKind::Replace => upload.clone(),
                ChangeKind::Add => &current | &upload,
                ChangeKind::Remove => &current - &upload,
            };
            let p = preview(kind, &current, &upload);
            prop_assert_eq!(p.new_size, after.len());
            prop_assert_eq!(p.would_add, (&after - &current).len());
            prop_assert_eq!(p.would_remove, (&current - &after).len());
            let added: Vec<u64> = (&after - &current).iter().take(SAMPLE).collect();
            let removed: Vec<u64> = (&current - &after).iter().take(SAMPLE).collect();
            prop_assert_eq!(p.would_add_sample, added);
            prop_assert_eq!(p.would_remove_sample, removed);
        }
    }
}
