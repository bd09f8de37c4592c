//! Redis housekeeping around the runs: loading an audience in each design's
//! shape, measuring what it costs, reading server counters, and leaving
//! nothing behind.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;

use super::cluster::BenchConn;
use super::plan::{Audience, BenchDesign, typed_text};
use crate::domain::{Campaign, Design};
use crate::ids::IdType;
use crate::nearcache::{NearCache, NearCacheOptions};
use crate::store::Store;
use crate::store::redis::RedisStore;

pub(super) struct Loaded {
    pub(super) json_key: Option<String>,
    pub(super) campaign: Option<String>,
    /// For `near-cache`: the cache over the loaded campaign. Dropping it
    /// stops its sync task.
    pub(super) cache: Option<NearCache>,
    pub(super) bytes_per_id: f64,
    /// For `near-cache`: the heap the cache holds per ID.
    pub(super) cache_bytes_per_id: Option<f64>,
}

/// Loads one audience in the shape of `design` and measures what it costs Redis.
pub(super) async fn load(
    store: &RedisStore,
    admin: &BenchConn,
    prefix: &str,
    design: BenchDesign,
    audience: &Audience,
    id_type: IdType,
) -> anyhow::Result<Loaded> {
    settle().await;
    let before = used_memory(admin).await?;
    let loaded = match design {
        BenchDesign::Json => {
            // The story's key: the whole list as one JSON array, written in one SET.
            let key = format!("{prefix}:json:{}", audience.list.len());
            let value = match id_type {
                IdType::Integer => serde_json::to_string(&audience.list)?,
                _ => serde_json::to_string(
                    &audience
                        .list
                        .iter()
                        .filter_map(|&id| typed_text(id_type, id))
                        .collect::<Vec<_>>(),
                )?,
            };
            admin
                .query::<()>(redis::cmd("SET").arg(&key).arg(value))
                .await?;
            Loaded {
                json_key: Some(key),
                campaign: None,
                cache: None,
                bytes_per_id: 0.0,
                cache_bytes_per_id: None,
            }
        }
        BenchDesign::Store(_) | BenchDesign::NearCache => {
            // The near-cache follows a `set` campaign, as `serve` does by default.
            let d = match design {
                BenchDesign::Store(d) => d,
                _ => Design::Set,
            };
            let id = format!("bench-{}-{}", d.as_str(), audience.list.len());
            let now = Utc::now();
            let campaign = Campaign {
                id: id.clone(),
                name: format!("bench {} {}", d.as_str(), audience.list.len()),
                starts_at: now - chrono::Duration::hours(1),
                ends_at: now + chrono::Duration::hours(6),
                design: d,
                user_id_type: id_type,
                audience_size: 0,
                version: 0,
                created_at: now,
                updated_at: now,
            };
            store.create_campaign(campaign).await?;
            store
                .replace_audience(&id, audience.typed(id_type), "bench")
                .await
                .with_context(|| format!("loading {} IDs into {id}", audience.list.len()))?;
            let cache = if design == BenchDesign::NearCache {
                let cache = NearCache::start(store.clone(), NearCacheOptions::default());
                let deadline = Instant::now() + Duration::from_secs(60);
                // Held, whatever its ID type (the integer probe says
                // nothing of a UUID campaign).
                while !cache.status().campaigns.iter().any(|c| c.id == id) {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "the near-cache never loaded {id}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Some(cache)
            } else {
                None
            };
            let cache_bytes_per_id = cache
                .as_ref()
                .map(|c| c.status().bytes as f64 / audience.list.len() as f64);
            Loaded {
                json_key: None,
                campaign: Some(id),
                cache,
                bytes_per_id: 0.0,
                cache_bytes_per_id,
            }
        }
    };
    settle().await;
    let after = used_memory(admin).await?;
    Ok(Loaded {
        bytes_per_id: after.saturating_sub(before) as f64 / audience.list.len() as f64,
        ..loaded
    })
}

/// Loads and removes a small audience in every store design once, so the
/// first real load's memory reading does not carry one-off costs (scripts,
/// the first allocations of Redis and the client) as if they were per ID.
pub(super) async fn warm_up(
    store: &RedisStore,
    admin: &BenchConn,
    prefix: &str,
    designs: &[BenchDesign],
    id_type: IdType,
) -> anyhow::Result<()> {
    let warm = Audience::small();
    for &design in designs {
        if design == BenchDesign::Json {
            continue;
        }
        let loaded = load(store, admin, prefix, design, &warm, id_type).await?;
        unload(store, admin, &loaded).await?;
    }
    quiesce(admin, prefix).await
}

/// Lets Redis settle before a memory reading.
pub(super) async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Waits until an unloaded design has fully gone, so the next design's memory
/// delta is not understated by this one's clean-up: the store retires
/// per-user entries a few seconds after a delete, and keeps the last snapshot
/// readable for a minute, which the bench does not need to wait for.
pub(super) async fn quiesce(admin: &BenchConn, prefix: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let users = admin.scan(&format!("{prefix}:user:*")).await?;
        if users.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            tracing::warn!(
                users = users.len(),
                "per-user entries linger; memory figures may be off"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let fixed = [
        format!("{prefix}:campaigns"),
        format!("{prefix}:catalog-version"),
    ];
    let leftovers: Vec<String> = admin
        .scan(&format!("{prefix}:*"))
        .await?
        .into_iter()
        .filter(|k| !fixed.contains(k))
        .collect();
    unlink_all(admin, &leftovers).await?;
    while Instant::now() < deadline {
        let pending = info_sum(admin, "memory", "lazyfree_pending_objects").await?;
        if pending == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

pub(super) async fn unlink_all(admin: &BenchConn, keys: &[String]) -> anyhow::Result<()> {
    // On a cluster the client splits a many-key UNLINK by slot.
    for batch in keys.chunks(1000) {
        admin.query::<()>(redis::cmd("UNLINK").arg(batch)).await?;
    }
    Ok(())
}

pub(super) async fn unload(
    store: &RedisStore,
    admin: &BenchConn,
    loaded: &Loaded,
) -> anyhow::Result<()> {
    if let Some(key) = &loaded.json_key {
        admin.query::<()>(redis::cmd("UNLINK").arg(key)).await?;
    }
    if let Some(id) = &loaded.campaign {
        store.delete_campaign(id).await?;
    }
    Ok(())
}

/// Server-side counters read around a run.
pub(super) struct RedisCounters {
    pub(super) net_output_bytes: u64,
    pub(super) cpu_us: f64,
}

impl RedisCounters {
    /// Summed over every master on a cluster.
    pub(super) async fn read(admin: &BenchConn) -> anyhow::Result<RedisCounters> {
        let stats = info(admin, "stats").await?;
        let cpu = info(admin, "cpu").await?;
        let sum = |texts: &[String], name: &str| -> f64 {
            texts
                .iter()
                .filter_map(|text| parse_info(text, name)?.parse::<f64>().ok())
                .sum()
        };
        Ok(RedisCounters {
            net_output_bytes: sum(&stats, "total_net_output_bytes") as u64,
            cpu_us: (sum(&cpu, "used_cpu_user") + sum(&cpu, "used_cpu_sys")) * 1e6,
        })
    }
}

/// `INFO section` of the server, or of every master on a cluster.
pub(super) async fn info(admin: &BenchConn, section: &str) -> anyhow::Result<Vec<String>> {
    let replies = admin.on_each(redis::cmd("INFO").arg(section)).await?;
    Ok(replies.into_iter().map(|(_, text)| text).collect())
}

/// A field as the first node reports it.
pub(super) async fn info_field(
    admin: &BenchConn,
    section: &str,
    name: &str,
) -> anyhow::Result<Option<String>> {
    let texts = info(admin, section).await?;
    Ok(texts
        .first()
        .and_then(|t| parse_info(t, name))
        .map(str::to_string))
}

/// A numeric field summed over every node that reports it.
pub(super) async fn info_sum(admin: &BenchConn, section: &str, name: &str) -> anyhow::Result<f64> {
    let texts = info(admin, section).await?;
    Ok(texts
        .iter()
        .filter_map(|t| parse_info(t, name)?.parse::<f64>().ok())
        .sum())
}

pub(super) async fn used_memory(admin: &BenchConn) -> anyhow::Result<u64> {
    let texts = info(admin, "memory").await?;
    let mut total = 0;
    for text in &texts {
        total += parse_info(text, "used_memory")
            .and_then(|v| v.parse::<u64>().ok())
            .context("INFO memory has no used_memory")?;
    }
    Ok(total)
}

pub(super) fn parse_info<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// Removes every key under the bench's prefix.
pub(super) async fn remove_prefix(admin: &BenchConn, prefix: &str) -> anyhow::Result<()> {
    let keys = admin.scan(&format!("{prefix}:*")).await?;
    unlink_all(admin, &keys).await
}
