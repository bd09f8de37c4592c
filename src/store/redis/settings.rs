//! Redis settings that hurt logins, read once at start-up and reported as
//! warnings (guestlist runs anyway: the operator may not own the server).
//!
//! - `lazyfree-lazy-expire no`: an audience that outlives its retention
//!   expires as one key of up to millions of members, freed on Redis's main
//!   thread; every login waits behind it.
//! - `lazyfree-lazy-user-del no`: a `DEL` of a big key (by guestlist's
//!   scripts or an operator) blocks the same way; with `yes` it acts as `UNLINK`.
//! - a `maxmemory-policy` that evicts: campaign data carries TTLs, so the
//!   `volatile-*` policies evict exactly it, and `allkeys-*` anything; a
//!   member would silently read as "not a member". `noeviction` refuses
//!   writes instead, which guestlist reports.
//! - a server older than [`MIN_VERSION`]: `EXPIREAT … NX|GT` (ranges.lua and
//!   the per-user design) needs 7.0, `SMISMEMBER` 6.2, `BITFIELD_RO` 6.0.
//!
//! Managed services often disable or rename `CONFIG`; then the settings are
//! logged as unchecked instead.

use std::collections::HashMap;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::conn::Conn;

/// The oldest Redis whose commands guestlist uses all of.
pub const MIN_VERSION: (u32, u32, u32) = (7, 0, 0);

/// The configuration names read with `CONFIG GET`.
const NAMES: [&str; 4] = [
    "lazyfree-lazy-expire",
    "lazyfree-lazy-user-del",
    "maxmemory-policy",
    "maxmemory",
];

/// What was read from the server; `None` or a missing name: not readable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `redis_version` from `INFO server`.
    pub version: Option<String>,
    /// Values from `CONFIG GET`, by name.
    pub config: HashMap<String, String>,
}

/// One sentence per setting that hurts logins, saying what to change.
pub fn warnings(settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["lazyfree-lazy-expire", "lazyfree-lazy-user-del"] {
        if settings.config.get(name).is_some_and(|v| v == "no") {
            out.push(format!(
                "{name} is no: Redis frees a big audience on its main thread and logins wait; set {name} yes"
            ));
        }
    }
    let unlimited = settings.config.get("maxmemory").is_some_and(|v| v == "0");
    if let Some(policy) = settings.config.get("maxmemory-policy")
        && policy != "noeviction"
        && !unlimited
    {
        out.push(format!(
            "maxmemory-policy is {policy}: under memory pressure Redis evicts campaign data \
             (kept with TTLs) and members read as non-members; set maxmemory-policy noeviction"
        ));
    }
    if let Some(version) = &settings.version {
        match parse_version(version) {
            Some(v) if v >= MIN_VERSION => {}
            Some(_) => out.push(format!(
                "Redis {version} is older than {}.{}.{}, which guestlist's commands need (EXPIREAT NX/GT); \
                 writes and checks will fail",
                MIN_VERSION.0, MIN_VERSION.1, MIN_VERSION.2
            )),
            None => out.push(format!(
                "Redis reports version {version:?}, which is not a version guestlist can compare"
            )),
        }
    }
    out
}

fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let mut parts = s.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Reads the settings, each part on its own so a disabled `CONFIG` still
/// leaves the version (and the reverse). On a cluster, from one primary:
/// a cluster's nodes are configured alike.
pub(crate) async fn read(conn: &Conn) -> (Settings, Vec<String>) {
    let mut settings = Settings::default();
    let mut unreadable = Vec::new();
    let one = || RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
    match conn
        .routed::<String>("settings", redis::cmd("INFO").arg("server").clone(), one())
        .await
    {
        Ok(info) => {
            settings.version = info
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .map(|v| v.trim().to_string());
        }
        Err(e) => unreadable.push(format!("INFO server: {e}")),
    }
    for name in NAMES {
        match conn
            .routed::<HashMap<String, String>>(
                "settings",
                redis::cmd("CONFIG").arg("GET").arg(name).clone(),
                one(),
            )
            .await
        {
            Ok(found) => settings.config.extend(found),
            Err(e) => {
                // One refusal (CONFIG disabled or renamed) means all are.
                unreadable.push(format!("CONFIG GET: {e}"));
                break;
            }
        }
    }
    (settings, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(version: &str, config: &[(&str, &str)]) -> Settings {
        Settings {
            version: Some(version.to_string()),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const GOOD: [(&str, &str); 4] = [
        ("lazyfree-lazy-expire", "yes"),
        ("lazyfree-lazy-user-del", "yes"),
        ("maxmemory-policy", "noeviction"),
        ("maxmemory", "1073741824"),
    ];

    #[test]
    fn a_well_configured_recent_server_has_no_warnings() {
        assert!(warnings(&settings("7.0.15", &GOOD)).is_empty());
        assert!(warnings(&settings("8.2.1", &GOOD)).is_empty());
    }

    #[test]
    fn each_lazyfree_setting_that_is_off_is_named() {
        let mut config = GOOD.to_vec();
        config[1] = ("lazyfree-lazy-user-del", "no");
        let w = warnings(&settings("7.0.15", &config));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("lazyfree-lazy-user-del is no"), "{w:?}");
        config[0] = ("lazyfree-lazy-expire", "no");
        let w = warnings(&settings("7.0.15", &config));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("lazyfree-lazy-expire is no"), "{w:?}");
    }

    #[test]
    fn every_evicting_policy_warns_unless_memory_is_unlimited() {
        for policy in [
            "volatile-lru",
            "volatile-lfu",
            "volatile-ttl",
            "volatile-random",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
        ] {
            let mut config = GOOD.to_vec();
            config[2] = ("maxmemory-policy", policy);
            let w = warnings(&settings("7.0.15", &config));
            assert_eq!(w.len(), 1, "{policy}: {w:?}");
            assert!(
                w[0].contains(policy) && w[0].contains("noeviction"),
                "{w:?}"
            );
            config[3] = ("maxmemory", "0");
            assert!(
                warnings(&settings("7.0.15", &config)).is_empty(),
                "{policy}"
            );
        }
    }

    #[test]
    fn servers_older_than_the_commands_need_are_named() {
        for old in ["6.2.14", "6.0", "5.0.7", "4.0.9"] {
            let w = warnings(&settings(old, &GOOD));
            assert_eq!(w.len(), 1, "{old}: {w:?}");
            assert!(w[0].contains(old) && w[0].contains("7.0.0"), "{w:?}");
        }
        assert_eq!(warnings(&settings("garbage", &GOOD)).len(), 1);
    }

    #[test]
    fn unreadable_settings_give_no_warning() {
        assert!(warnings(&Settings::default()).is_empty());
    }
}
