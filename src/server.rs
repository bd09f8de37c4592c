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
    let mut admin = Vec::new();
    if let Some(token) = args.admin_token.as_deref().filter(|t| !t.is_empty()) {
        admin.push(("admin".to_string(), token.to_string()));
    }
    if let Some(list) = args.admin_tokens.as_deref() {
        admin.extend(parse_named_tokens(list)?);
    }
    if admin.is_empty() {
        let token = format!("{:032x}", rand::random::<u128>());
        eprintln!("guestlist: no admin token is set; this run's admin token is {token}");
        admin.push(("admin".to_string(), token));
    }
    Tokens::new(admin, args.check_token.clone())
}

/// Parses `name:token,name:token`. The error names the entry, never the token.
pub fn parse_named_tokens(list: &str) -> anyhow::Result<Vec<(String, String)>> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(i, entry)| {
            let (name, token) = entry.split_once(':').ok_or_else(|| {
                anyhow::anyhow!("GUESTLIST_ADMIN_TOKENS entry {} is not name:token", i + 1)
            })?;
            let name = name.trim();
            anyhow::ensure!(
                !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)),
                "GUESTLIST_ADMIN_TOKENS entry {}: the name must be 1-64 characters of letters, digits, '.', '_', '-' or '@'",
                i + 1
            );
            // Presented tokens are trimmed, so configured ones are too.
            let token = token.trim();
            anyhow::ensure!(!token.is_empty(), "GUESTLIST_ADMIN_TOKENS entry {} ({name}) has an empty token", i + 1);
            Ok((name.to_string(), token.to_string()))
        })
        .collect()
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
        max_audience: args.max_audience,
        uploads: http::audience::UploadSlots::new(args.max_concurrent_uploads),
        metrics: Some(crate::telemetry::metrics()),
        portal: Arc::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_tokens_parse_and_errors_never_echo_a_token() {
        let parsed = parse_named_tokens("alice:s3cret, bob:other:with:colons").unwrap();
        assert_eq!(parsed[0], ("alice".into(), "s3cret".into()));
        assert_eq!(parsed[1], ("bob".into(), "other:with:colons".into()));
        let e = parse_named_tokens("alice:s3cret,notoken")
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 2") && !e.contains("s3cret"), "{e}");
        assert!(parse_named_tokens("bad name:x").is_err());
    }
}
