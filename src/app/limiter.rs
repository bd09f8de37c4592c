//! The limiter on failed credentials, per client network: wrong bearer tokens
//! on the API and wrong tokens at the portal's sign-in count together, since
//! both guess the same admin tokens.
//!
//! An IPv4 client counts by its address, an IPv6 client by its /64: one
//! host usually holds a whole /64, and counting single IPv6 addresses would
//! give it billions of fresh budgets.
//!
//! Windows are fixed, and the table is capped: past `MAX_TRACKED` clients
//! the oldest window is forgotten, which is the lesser harm than letting a
//! flood from many addresses grow memory. Rate-limiting crates such as
//! `governor` keep one entry per key with no hard cap, which is why this
//! small table is ours.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Failures allowed per client network per window.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client networks tracked at once.
const MAX_TRACKED: usize = 10_000;

/// Who a failure is counted against: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                ClientKey(IpAddr::V6(network.into()))
            }
            v4 => ClientKey(v4),
        }
    }
}

#[derive(Default)]
pub struct FailureLimiter {
    /// A std `Mutex`: held for one map operation, never across an await.
    failures: Mutex<HashMap<ClientKey, (Instant, u32)>>,
    /// Entries in `failures`, read without the lock so that requests with a
    /// valid token skip the lock while nobody is failing.
    tracked: AtomicUsize,
}

impl FailureLimiter {
    /// `Err(wait)` while `client` has used up its failures for this window.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let map = self.failures.lock().expect("lock poisoned");
        match map.get(&ClientKey::from(client)) {
            Some((start, count)) if *count >= MAX_FAILURES => {
                let wait = FAILURE_WINDOW.saturating_sub(start.elapsed());
                if wait.is_zero() { Ok(()) } else { Err(wait) }
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, client: IpAddr) {
        let key = ClientKey::from(client);
        let now = Instant::now();
        let mut map = self.failures.lock().expect("lock poisoned");
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (start, _)| start.elapsed() < FAILURE_WINDOW);
        }
        if map.len() >= MAX_TRACKED
            && !map.contains_key(&key)
            && let Some(oldest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        let entry = map.entry(key).or_insert((now, 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        self.tracked.store(map.len(), Ordering::Relaxed);
    }

    pub fn succeeded(&self, client: IpAddr) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = self.failures.lock().expect("lock poisoned");
        map.remove(&ClientKey::from(client));
        self.tracked.store(map.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_are_limited_per_address_and_forgiven_by_a_success() {
        let limiter = FailureLimiter::default();
        let (a, b) = (ip("127.0.0.1"), ip("10.0.0.1"));
        for _ in 0..MAX_FAILURES {
            assert!(limiter.check(a).is_ok());
            limiter.failed(a);
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert!(limiter.check(b).is_ok(), "another address is not limited");
        limiter.succeeded(a);
        assert!(limiter.check(a).is_ok());
    }

    #[test]
    fn an_ipv6_client_counts_per_64_and_a_mapped_ipv4_as_itself() {
        let limiter = FailureLimiter::default();
        for i in 0..MAX_FAILURES {
            limiter.failed(ip(&format!("2001:db8:1:2::{i:x}")));
        }
        assert!(limiter.check(ip("2001:db8:1:2:ffff::1")).is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1")).is_ok());
        for _ in 0..MAX_FAILURES {
            limiter.failed(ip("::ffff:192.0.2.7"));
        }
        assert!(limiter.check(ip("192.0.2.7")).is_err());
        assert!(limiter.check(ip("192.0.2.8")).is_ok());
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_addresses() {
        let limiter = FailureLimiter::default();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            limiter.failed(IpAddr::V4(i.into()));
        }
        assert_eq!(limiter.failures.lock().unwrap().len(), MAX_TRACKED);
        assert_eq!(limiter.tracked.load(Ordering::Relaxed), MAX_TRACKED);
    }
}
