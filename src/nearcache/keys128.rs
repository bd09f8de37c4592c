//! UUID and string audiences in the near-cache: one 128-bit key per ID,
//! sorted, found through a directory of their top bits.
//!
//! - **UUIDs** are held exactly: the key is the UUID passed through a
//!   fixed bijection of 128-bit values ([`mix`]), so time-ordered UUIDs
//!   (v7, whose top 48 bits are a timestamp) spread over the directory as
//!   evenly as random ones. Two UUIDs never share a key.
//! - **Strings** are held as keyed 128-bit SipHash-1-3 fingerprints, with
//!   keys drawn at random for each cached version, so nobody can choose
//!   IDs that collide. A non-member is answered "member" only if its
//!   fingerprint equals one of the audience's: for `n` members that is at
//!   most `n / 2^128` per check, about 3e-32 at 10,000,000 members. The
//!   export and every store answer read the exact strings instead.
//!
//! Memory: 16 bytes per key plus a 4-byte directory slot per 8 to 16 keys,
//! so at most 16.5 bytes per ID. Each key is split into its high and low 64
//! bits, held in two arrays: a probe reads one directory slot and scans the
//! block's high halves (8 to 16 of them, one or two cache lines), and reads
//! a low half only where a high half matches, which for a non-member (most
//! checks) is about never. (A directory of one slot per 4 keys measured no
//! faster at 10,000,000 UUIDs: twice its size costs more TLB misses than
//! the shorter scan saves.) Big arrays sit on huge pages (`pages`), which
//! spares most of those TLB misses.

use std::borrow::Cow;

use rand::RngCore;
use siphasher::sip128::SipHasher13;

use super::pages::Pages;
use crate::ids::{Audience, User};

/// What the keys stand for.
enum Kind {
    Uuids,
    Strings(SipHasher13),
}

/// See the module documentation.
pub(super) struct Keys128 {
    kind: Kind,
    /// `128 - b`, where the directory has `2^b` slots (`b` may be 0).
    shift: u32,
    /// `offsets[h]..offsets[h + 1]` is the block of keys whose top bits are `h`.
    offsets: Pages<u32>,
    /// The keys' high 64 bits, ascending.
    highs: Pages<u64>,
    /// The keys' low 64 bits, in the same order.
    lows: Pages<u64>,
}

/// Blocks up to this many keys are scanned; bigger ones (rare: about twice
/// the average) are binary-searched.
const SCAN: usize = 32;

/// A fixed bijection of 128-bit values that spreads structured UUIDs:
/// xor-shifts by half the width and multiplications by odd constants are
/// each invertible, so distinct UUIDs keep distinct keys.
#[inline]
pub(super) fn mix(mut x: u128) -> u128 {
    x ^= x >> 64;
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    x ^= x >> 64;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93_32ea_ecf8_c3ce_f3c5);
    x ^ (x >> 64)
}

impl Keys128 {
    /// The keys of a UUID or string audience, with the heap bytes they
    /// hold; `None` for integers, which `Members` holds in its own forms.
    ///
    /// Takes the audience by value so it is gone before the arrays are
    /// built: a reload peaks at the audience plus its keys, then the keys
    /// plus the arrays, never all of them at once.
    pub(super) fn new(audience: Audience) -> Option<(Keys128, u64)> {
        let (kind, keys): (Kind, Vec<u128>) = match audience {
            Audience::Integers(_) => return None,
            // Mixed in place: the same allocation.
            Audience::Uuids(ids) => (Kind::Uuids, ids.into_iter().map(mix).collect()),
            Audience::Strings(ids) => {
                let mut rng = rand::rng();
                let hasher = SipHasher13::new_with_keys(rng.next_u64(), rng.next_u64());
                let keys = ids.iter().map(|s| fingerprint(&hasher, s)).collect();
                (Kind::Strings(hasher), keys)
            }
        };
        let built = Keys128::from_keys(kind, keys);
        let bytes = built.bytes();
        Some((built, bytes))
    }

    fn from_keys(kind: Kind, mut keys: Vec<u128>) -> Keys128 {
        keys.sort_unstable();
        // Two strings sharing a fingerprint (about never) are one key.
        keys.dedup();
        let len = keys.len();
        // The most directory bits that still leave at least 8 keys per slot
        // on average: the directory costs at most half a byte per ID.
        let bits = (len / 8).max(1).ilog2();
        let shift = 128 - bits;
        let slots = 1usize << bits;
        let mut offsets = Vec::with_capacity(slots + 1);
        offsets.push(0u32);
        for (i, &key) in keys.iter().enumerate() {
            let slot = top(key, shift);
            while offsets.len() <= slot {
                offsets.push(i as u32);
            }
        }
        while offsets.len() <= slots {
            offsets.push(len as u32);
        }
        Keys128 {
            kind,
            shift,
            offsets: Pages::collect(offsets.len(), offsets.into_iter()),
            highs: Pages::collect(len, keys.iter().map(|&k| (k >> 64) as u64)),
            lows: Pages::collect(len, keys.iter().map(|&k| k as u64)),
        }
    }

    fn bytes(&self) -> u64 {
        (self.offsets.len() * 4 + self.highs.len() * 16) as u64
    }

    pub(super) fn len(&self) -> u64 {
        self.highs.len() as u64
    }

    #[inline]
    fn contains_key(&self, key: u128) -> bool {
        let slot = top(key, self.shift);
        let (Some(&start), Some(&end)) = (self.offsets.get(slot), self.offsets.get(slot + 1))
        else {
            return false;
        };
        let (start, end) = (start as usize, end as usize);
        let (high, low) = ((key >> 64) as u64, key as u64);
        let block = &self.highs[start..end];
        let first = if block.len() <= SCAN {
            match block.iter().position(|&h| h >= high) {
                Some(i) => i,
                None => return false,
            }
        } else {
            block.partition_point(|&h| h < high)
        };
        // Keys sharing a high half are adjacent and ordered by their low one.
        (start + first..end)
            .take_while(|&i| self.highs[i] == high)
            .any(|i| self.lows[i] == low)
    }

    /// Whether `user`, read as this audience's type, is held; `None` when
    /// it cannot be an ID of that type.
    #[inline]
    pub(super) fn contains_user(&self, user: &User) -> Option<bool> {
        match &self.kind {
            Kind::Uuids => user.as_uuid().map(|u| self.contains_key(mix(u))),
            Kind::Strings(hasher) => user
                .as_string()
                .map(|s| self.contains_key(fingerprint(hasher, &s))),
        }
    }

    /// Whether the user named by integer `id` is held: never for UUIDs,
    /// its decimal text for strings.
    #[inline]
    pub(super) fn contains_int(&self, id: u64) -> bool {
        match &self.kind {
            Kind::Uuids => false,
            Kind::Strings(hasher) => {
                let text: Cow<'_, str> = Cow::Owned(id.to_string());
                self.contains_key(fingerprint(hasher, &text))
            }
        }
    }

    #[cfg(test)]
    pub(super) fn kind(&self) -> &'static str {
        match self.kind {
            Kind::Uuids => "uuids",
            Kind::Strings(_) => "strings",
        }
    }
}

/// The directory slot of `key`: its top `128 - shift` bits.
#[inline]
fn top(key: u128, shift: u32) -> usize {
    key.checked_shr(shift).unwrap_or(0) as usize
}

#[inline]
fn fingerprint(hasher: &SipHasher13, s: &str) -> u128 {
    hasher.hash(s.as_bytes()).as_u128()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{IdType, Strings};
    use proptest::prelude::Strategy;

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn mix_keeps_uuids_apart_and_spreads_time_ordered_ones() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        // v7-like: a millisecond timestamp in the top 48 bits.
        let uuids: Vec<u128> = (0..100_000u128)
            .map(|i| ((1_700_000_000_000 + i) << 80) | u128::from(next()))
            .collect();
        let mut keys: Vec<u128> = uuids.iter().map(|&u| mix(u)).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), uuids.len(), "mix is one-to-one");
        let (built, _) = Keys128::new(Audience::Uuids(uuids.clone())).unwrap();
        for &u in &uuids {
            assert!(built.contains_key(mix(u)));
            assert!(!built.contains_key(mix(u) ^ 1), "the low half is compared");
            assert!(!built.contains_key(mix(u) ^ (1 << 64)), "the high half too");
        }
        let biggest = built.offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(biggest <= 4 * SCAN as u32, "a block of {biggest} keys");
    }

    #[test]
    fn uuid_and_string_keys_answer_exactly_what_they_hold() {
        let uuids = Audience::from_keys(
            IdType::Uuid,
            [
                "3F2A6C1E-8B7D-4C2A-9E1F-0A1B2C3D4E5F",
                "00000000-0000-0000-0000-000000000000",
            ]
            .iter()
            .map(|t| IdType::Uuid.read(t.as_bytes()).unwrap()),
        )
        .unwrap();
        let (built, bytes) = Keys128::new(uuids).unwrap();
        assert_eq!(
            (built.kind(), built.len(), bytes),
            ("uuids", 2, 2 * 16 + 2 * 4)
        );
        let user = |t: &str| User::parse(t).unwrap();
        let holds = |t: &str| built.contains_user(&user(t));
        assert_eq!(holds("3f2a6c1e8b7d4c2a9e1f0a1b2c3d4e5f"), Some(true));
        assert_eq!(holds("00000000-0000-0000-0000-000000000000"), Some(true));
        assert_eq!(holds("00000000-0000-0000-0000-000000000001"), Some(false));
        assert_eq!(holds("alice"), None, "not a UUID: the store says why");
        assert!(!built.contains_int(0));

        let strings = Audience::Strings(Strings::from_unsorted(
            vec!["a+b@example.com", "42", ""]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
        ));
        let (built, _) = Keys128::new(strings).unwrap();
        assert_eq!(built.kind(), "strings");
        let holds = |t: &str| built.contains_user(&user(t));
        assert_eq!(holds("a+b@example.com"), Some(true));
        assert_eq!(holds("A+B@example.com"), Some(false));
        assert_eq!(holds("42"), Some(true));
        assert!(built.contains_int(42) && !built.contains_int(43));
        assert!(Keys128::new(Audience::from_iter([1u64])).is_none());
        let (empty, bytes) = Keys128::new(Audience::empty(IdType::String)).unwrap();
        assert_eq!(empty.contains_user(&user("x")), Some(false));
        assert_eq!(bytes, 2 * 4);
    }

    proptest::proptest! {
        /// Exactly the keys held, whatever their spread: clustered keys
        /// (long blocks, binary-searched) and neighbours of members.
        #[test]
        fn keys_answer_like_a_set(
            keys in proptest::collection::btree_set(
                proptest::prop_oneof![
                    proptest::prelude::any::<u128>(),
                    (0u128..64).prop_map(|i| (7u128 << 100) | i),
                ],
                0..400,
            ),
            probes in proptest::collection::vec(proptest::prelude::any::<u128>(), 0..50),
        ) {
            let built = Keys128::from_keys(Kind::Uuids, keys.iter().copied().collect());
            proptest::prop_assert_eq!(built.len(), keys.len() as u64);
            for &k in &keys {
                proptest::prop_assert!(built.contains_key(k));
                proptest::prop_assert_eq!(built.contains_key(k ^ 1), keys.contains(&(k ^ 1)));
                proptest::prop_assert_eq!(built.contains_key(k ^ (1 << 64)), keys.contains(&(k ^ (1 << 64))));
            }
            for p in probes {
                proptest::prop_assert_eq!(built.contains_key(p), keys.contains(&p));
            }
        }
    }
}
