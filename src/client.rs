//! The library API: guestlist inside a Rust login service, with no HTTP hop.
//!
//! A [`Client`] connects to the Redis that guestlist's service writes to and
//! keeps a [`NearCache`] of every scheduled or active audience, so a login
//! check is a lookup in process memory. It is the same code `guestlist serve`
//! runs: campaigns it does not hold (too big for its budget, or not loaded
//! yet) are asked of Redis, and every answer says where it came from and
//! whether it is stale.
//!
//! ```no_run
//! use guestlist::client::{Client, ClientOptions};
//!
//! # async fn login(user_id: u64) -> Result<(), guestlist::client::ClientError> {
//! let client = Client::connect("redis://127.0.0.1:6379", ClientOptions::default()).await?;
//! // Which active campaigns is this user in?
//! let answer = client.campaigns_for(user_id).await?;
//! for campaign in &answer.campaigns {
//!     println!("show the {campaign} banner");
//! }
//! // Is this user in one campaign?
//! if client.is_member("spring-sale", user_id).await?.member {
//!     println!("apply the spring discount");
//! }
//! # Ok(())
//! # }
//! ```

// Part of the library a login service embeds: every public item says what it is.
#![warn(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::UserId;
use crate::ids::User;
use crate::lookup::{CheckError, Checker, Membership, UserCampaigns};
use crate::nearcache::{CacheStatus, NearCache, NearCacheOptions, StalePolicy};
use crate::store::redis::{ConnectOptions, Keys, RedisStore};
use crate::store::{Store, StoreOptions};

/// How a [`Client`] talks to Redis and how its near-cache behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Deadline of a check that has to go to Redis.
    pub check_timeout: Duration,
    /// Age past which an unconfirmed cached audience is stale.
    pub max_staleness: Duration,
    /// Serve stale answers (flagged) or refuse them.
    pub on_stale: StalePolicy,
    /// Upper bound on the cached bitmaps, in bytes.
    pub max_cache_bytes: u64,
    /// Key prefix the service writes under (default `guestlist`).
    pub key_prefix: String,
    /// A password kept out of the URL, and TLS files for `rediss://`
    /// (a private CA, a client certificate).
    pub connect: ConnectOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let cache = NearCacheOptions::default();
        ClientOptions {
            check_timeout: StoreOptions::default().check_timeout,
            max_staleness: cache.max_staleness,
            on_stale: cache.on_stale,
            max_cache_bytes: cache.max_bytes,
            key_prefix: crate::store::redis::PREFIX.to_string(),
            connect: ConnectOptions::default(),
        }
    }
}

/// Why a check through the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The Redis URL is invalid.
    #[error("cannot use this Redis URL: {0}")]
    Config(String),
    /// A check failed: Redis unreachable or too slow, an unknown campaign,
    /// or a stale answer refused by [`StalePolicy::Error`].
    #[error(transparent)]
    Check(#[from] CheckError),
}

/// Login checks against guestlist's Redis data, answered from a near-cache.
/// Cheap to clone; clones share the connections and the cache.
#[derive(Clone)]
pub struct Client {
    checker: Checker,
    cache: NearCache,
}

impl Client {
    /// Connects and starts the near-cache. Returns at once: until the cache
    /// has loaded (see [`Client::wait_until_warm`]), checks go to Redis.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), guestlist::client::ClientError> {
    /// use std::time::Duration;
    /// use guestlist::client::{Client, ClientOptions};
    /// use guestlist::nearcache::StalePolicy;
    ///
    /// let options = ClientOptions {
    ///     max_staleness: Duration::from_secs(10),
    ///     on_stale: StalePolicy::Serve,
    ///     ..ClientOptions::default()
    /// };
    /// let client = Client::connect("redis://127.0.0.1:6379/0", options).await?;
    /// client.wait_until_warm(Duration::from_secs(5)).await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let store_options = StoreOptions {
            check_timeout: options.check_timeout,
            max_staleness: options.max_staleness,
            ..StoreOptions::default()
        };
        let keys = Keys::new(options.key_prefix);
        let store = RedisStore::open(url, &options.connect, store_options, keys)
            .await
            .map_err(|e| ClientError::Config(format!("{e:#}")))?;
        let cache = NearCache::start(
            store.clone(),
            NearCacheOptions {
                max_bytes: options.max_cache_bytes,
                max_staleness: options.max_staleness,
                on_stale: options.on_stale,
            },
        );
        let store: Arc<dyn Store> = Arc::new(store);
        Ok(Client {
            checker: Checker::new(store, Some(cache.clone())),
            cache,
        })
    }

    /// Waits until every scheduled or active campaign is cached, or `timeout`
    /// passes. Returns whether the cache is warm.
    pub async fn wait_until_warm(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.cache.is_warm() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Is `user` in `campaign`'s audience? `active` says whether the campaign
    /// is running now; `source` and `stale` say how the answer was reached.
    ///
    /// ```no_run
    /// # async fn demo(client: guestlist::client::Client) -> Result<(), guestlist::client::ClientError> {
    /// let answer = client.is_member("spring-sale", 42).await?;
    /// let eligible = answer.member && answer.active;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn is_member(&self, campaign: &str, user: UserId) -> Result<Membership, ClientError> {
        Ok(self
            .checker
            .is_member(campaign, &User::from_int(user))
            .await?)
    }

    /// The active campaigns whose audience holds `user`, sorted by id.
    pub async fn campaigns_for(&self, user: UserId) -> Result<UserCampaigns, ClientError> {
        Ok(self.checker.campaigns_for(&User::from_int(user)).await?)
    }

    /// [`Client::is_member`] for a user named by text, read as the
    /// campaign's ID type (integer, string or UUID).
    pub async fn is_member_named(
        &self,
        campaign: &str,
        user: &str,
    ) -> Result<Membership, ClientError> {
        let user =
            User::parse(user).map_err(|why| CheckError::BadUser(why.message(user.as_bytes())))?;
        Ok(self.checker.is_member(campaign, &user).await?)
    }

    /// What the near-cache holds: campaigns, versions, sizes and staleness.
    ///
    /// ```no_run
    /// # fn demo(client: guestlist::client::Client) {
    /// let status = client.status();
    /// for c in &status.campaigns {
    ///     println!("{} v{} ({} ids, stale: {})", c.id, c.version, c.ids, c.stale);
    /// }
    /// # }
    /// ```
    pub fn status(&self) -> CacheStatus {
        self.cache.status()
    }
}
