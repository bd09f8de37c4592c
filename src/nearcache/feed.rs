//! What the near-cache follows: a catalog of campaigns that says when it
//! changes, and the audience snapshot of each version. The Redis store is
//! the feed in production; the cache knows nothing else of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::domain::UserId;
use crate::ids::Audience;
use crate::store::StoreResult;
use crate::store::redis::{CampaignMeta, CatalogListener, RedisStore};

/// The campaigns a feed knows, by id.
pub type Campaigns = HashMap<String, Arc<CampaignMeta>>;

/// A source of campaigns and audiences for [`super::NearCache::start`].
///
/// The contract the cache relies on, so that nothing it answers goes back
/// in time:
/// - listeners (`on_catalog_change`) run on every catalog change, before
///   the change is visible to readers;
/// - `with_catalog_held` holds changes off while it runs;
/// - `subscribe_catalog` ticks after every change or confirmation.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// The campaigns known now, with the start of the reconciliation that
    /// confirmed them; `None` before the first.
    fn known_campaigns(&self) -> Option<(Vec<Arc<CampaignMeta>>, Instant)>;
    /// One campaign as known now, however old.
    fn known_campaign(&self, id: &str) -> Option<Arc<CampaignMeta>>;
    /// Runs `f` on the known campaigns with changes held off.
    fn with_catalog_held(&self, f: &mut dyn FnMut(&Campaigns));
    /// Calls `listener` with the new campaign list on every change, before
    /// the change is visible.
    fn on_catalog_change(&self, listener: CatalogListener);
    /// Ticks after every change or confirmation of the catalog.
    fn subscribe_catalog(&self) -> tokio::sync::watch::Receiver<u64>;
    /// When the change that produced `version` of `campaign` was announced
    /// (unix ms), if it was; taken once. For the invalidation-lag metric.
    fn take_announced(&self, campaign: &str, version: u64) -> Option<i64>;
    /// The audience of `meta`'s version, sorted ascending: an integer
    /// campaign's.
    async fn snapshot_ids(&self, meta: &CampaignMeta) -> StoreResult<Vec<UserId>>;
    /// The audience of `meta`'s version, of any ID type.
    async fn snapshot_audience(&self, meta: &CampaignMeta) -> StoreResult<Audience>;
}

#[async_trait]
impl ChangeFeed for RedisStore {
    fn known_campaigns(&self) -> Option<(Vec<Arc<CampaignMeta>>, Instant)> {
        RedisStore::known_campaigns(self)
    }

    fn known_campaign(&self, id: &str) -> Option<Arc<CampaignMeta>> {
        RedisStore::known_campaign(self, id)
    }

    fn with_catalog_held(&self, f: &mut dyn FnMut(&Campaigns)) {
        RedisStore::with_catalog_held(self, f)
    }

    fn on_catalog_change(&self, listener: CatalogListener) {
        RedisStore::on_catalog_change(self, listener)
    }

    fn subscribe_catalog(&self) -> tokio::sync::watch::Receiver<u64> {
        RedisStore::subscribe_catalog(self)
    }

    fn take_announced(&self, campaign: &str, version: u64) -> Option<i64> {
        RedisStore::take_announced(self, campaign, version)
    }

    async fn snapshot_ids(&self, meta: &CampaignMeta) -> StoreResult<Vec<UserId>> {
        RedisStore::snapshot_ids(self, meta).await
    }

    async fn snapshot_audience(&self, meta: &CampaignMeta) -> StoreResult<Audience> {
        RedisStore::snapshot(self, meta).await
    }
}
