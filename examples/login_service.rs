//! A login service that embeds guestlist as a library: no HTTP hop, checks
//! answered from the near-cache.
//!
//! It needs a Redis. With no argument it starts a private `redis-server` from
//! PATH, writes a demo campaign the way `guestlist serve` would, then logs a
//! few users in:
//!
//! ```sh
//! cargo run --example login_service                    # private redis-server
//! cargo run --example login_service redis://127.0.0.1:6379
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use guestlist::client::{Client, ClientOptions};
use guestlist::domain::{Campaign, Design};
use guestlist::redis_server::RedisServer;
use guestlist::store::redis::RedisStore;
use guestlist::store::{Store, StoreOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (url, _private) = match std::env::args().nth(1) {
        Some(url) => (url, None),
        None => {
            let server = RedisServer::start()?;
            println!("started a private redis-server at {}", server.url());
            (server.url(), Some(server))
        }
    };

    // The admin side, as the service would write it.
    let admin: Arc<dyn Store> = Arc::new(RedisStore::connect(&url, StoreOptions::default()).await?);
    let now = Utc::now();
    let campaign = Campaign {
        id: "welcome-back".into(),
        name: "Welcome back".into(),
        starts_at: now - chrono::Duration::hours(1),
        ends_at: now + chrono::Duration::days(1),
        design: Design::Set,
        user_id_type: Default::default(),
        audience_size: 0,
        version: 0,
        created_at: now,
        updated_at: now,
    };
    match admin.create_campaign(campaign).await {
        Ok(_) | Err(guestlist::store::StoreError::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let audience = (0..100_000u64).map(|i| i * 3).collect();
    admin
        .replace_audience("welcome-back", audience, "example")
        .await?;

    // The login side: one client per process, shared by every request.
    let client = Client::connect(&url, ClientOptions::default()).await?;
    let warm = client.wait_until_warm(Duration::from_secs(5)).await;
    println!("near-cache warm: {warm}");

    for user in [0u64, 1, 2, 3, 299_997, 300_000] {
        let started = Instant::now();
        let answer = client.campaigns_for(user).await?;
        println!(
            "user {user:>7}: campaigns {:?} (from {:?}, stale: {}, {:?})",
            answer.campaigns,
            answer.source,
            answer.stale,
            started.elapsed()
        );
    }
    let member = client.is_member("welcome-back", 3).await?;
    println!(
        "is 3 in welcome-back? {} (active: {})",
        member.member, member.active
    );

    let status = client.status();
    for c in &status.campaigns {
        println!(
            "cached: {} v{} — {} ids in {} bytes",
            c.id, c.version, c.ids, c.bytes
        );
    }
    admin.delete_campaign("welcome-back").await?;
    Ok(())
}
