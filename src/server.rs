//! Turns `serve` arguments into a running service.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{ServeArgs, Toggle};
use crate::http::{self, AppState, Tokens};
use crate::lookup::Checker;
use crate::nearcache::{NearCache, NearCacheOptions};
use crate::store::redis::RedisStore;
use crate::store::{self, Store, StoreSpec};

/// Builds the token set from the arguments, generating an admin token when
/// none is configured. A generated token is printed once, to stderr only.
pub fn tokens(args: &ServeArgs) -> anyhow::Result<Tokens> {
    let admin = match args.admin_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => token.to_string(),
        None => {
            let token = format!("{:032x}", rand::random::<u128>());
            eprintln!(
                "guestlist: GUESTLIST_ADMIN_TOKEN is not set; this run's admin token is {token}"
            );
            token
        }
    };
    Tokens::new(vec![("admin".into(), admin)], args.check_token.clone())
}

/// Opens the store, binds the listener and serves until `shutdown` resolves.
pub async fn serve(
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let spec = StoreSpec::parse(&args.store);
    let (store, cache): (Arc<dyn Store>, Option<NearCache>) = match &spec {
        StoreSpec::Redis(url) => {
            let redis = RedisStore::connect(url, args.store_options())
                .await
                .with_context(|| format!("opening the store {}", spec.redacted()))?;
            let cache = (args.near_cache == Toggle::On).then(|| {
                NearCache::start(
                    redis.clone(),
                    NearCacheOptions {
                        max_bytes: args.near_cache_max_bytes,
                        max_staleness: args.max_staleness,
                        on_stale: args.on_stale,
                    },
                )
            });
            (Arc::new(redis), cache)
        }
        // The embedded store already answers from in-memory bitmaps.
        StoreSpec::Embedded(_) => (
            store::open(&spec, args.store_options())
                .await
                .with_context(|| format!("opening the store {}", spec.redacted()))?,
            None,
        ),
    };
    let state = AppState {
        checker: Checker::new(store.clone(), cache.clone()),
        store,
        tokens: Arc::new(tokens(&args)?),
        max_upload_bytes: args.max_upload_bytes,
        metrics: Some(crate::telemetry::metrics()),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        store = %spec.redacted(),
        kind = state.store.kind(),
        check_timeout = ?args.check_timeout,
        near_cache = cache.is_some(),
        "guestlist serving"
    );
    http::run(listener, http::router(state), shutdown).await?;
    tracing::info!("drained in-flight requests; bye");
    Ok(())
}
