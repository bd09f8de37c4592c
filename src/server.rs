//! Turns `serve` arguments into a running service.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::app::peer::TrustedProxies;
use crate::app::tokens::ensure_usable_token;
use crate::app::{self, AppState, Tokens};
use crate::config::{ServeArgs, Toggle};
use crate::http;
use crate::lookup::Checker;
use crate::nearcache::{NearCache, NearCacheOptions};
use crate::portal::Portal;
use crate::routes::{Surface, router, router_for};
use crate::secret::{self, Secret};
use crate::store::redis::{Keys, RedisStore};
use crate::store::{self, Store, StoreSpec};

/// Builds the token set from the environment (`NAME` or `NAME_FILE`),
/// generating an admin token when none is configured. A generated token is
/// printed once, to stderr only, and only when `may_generate` (a loopback
/// listener: off a developer's machine stderr is a log stream, and a token
/// printed there is a leaked one). Every configured token must be at least
/// [`MIN_TOKEN_CHARS`](crate::app::tokens::MIN_TOKEN_CHARS) long.
pub fn tokens(
    lookup: impl Fn(&str) -> Option<String>,
    may_generate: bool,
) -> anyhow::Result<Tokens> {
    let mut admin = Vec::new();
    if let Some(token) = secret::from_lookup("GUESTLIST_ADMIN_TOKEN", &lookup)? {
        ensure_usable_token("GUESTLIST_ADMIN_TOKEN", &token)?;
        admin.push(("admin".to_string(), token));
    }
    if let Some(list) = secret::from_lookup("GUESTLIST_ADMIN_TOKENS", &lookup)? {
        for (name, token) in parse_named_tokens(list.expose())? {
            ensure_usable_token(
                &format!("the GUESTLIST_ADMIN_TOKENS token named {name:?}"),
                &token,
            )?;
            admin.push((name, token));
        }
    }
    if admin.is_empty() {
        anyhow::ensure!(
            may_generate,
            "no admin token is set, and on a non-loopback address a generated one would be \
             printed to the log stream; set GUESTLIST_ADMIN_TOKEN (or GUESTLIST_ADMIN_TOKEN_FILE)"
        );
        let token = format!("{:032x}", rand::random::<u128>());
        eprintln!("guestlist: no admin token is set; this run's admin token is {token}");
        admin.push(("admin".to_string(), Secret::new(token)));
    }
    let check = secret::from_lookup("GUESTLIST_CHECK_TOKEN", &lookup)?;
    if let Some(token) = &check {
        ensure_usable_token("GUESTLIST_CHECK_TOKEN", token)?;
    }
    Tokens::new(admin, check)
}

/// Parses `name:token,name:token`. The error names the entry, never the token.
pub fn parse_named_tokens(list: &str) -> anyhow::Result<Vec<(String, Secret)>> {
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
            Ok((name.to_string(), Secret::new(token)))
        })
        .collect()
}

/// Refuses to serve reads and checks to a network without a check token,
/// unless that is what `--public-reads` asks for. Loopback stays open so a
/// developer's machine needs no token.
/// The admin listener serves campaign reads too, so it is held to the same rule.
fn ensure_reads_guarded(args: &ServeArgs, tokens: &Tokens) -> anyhow::Result<()> {
    let listeners = [
        ("--listen", Some(args.listen)),
        ("--admin-listen", args.admin_listen),
    ];
    for (flag, addr) in listeners {
        let Some(addr) = addr else { continue };
        anyhow::ensure!(
            addr.ip().is_loopback() || tokens.has_check_token() || args.public_reads,
            "{flag} {addr} is not a loopback address, and without GUESTLIST_CHECK_TOKEN anyone who \
             reaches it can read campaigns and check users; set GUESTLIST_CHECK_TOKEN (or \
             GUESTLIST_CHECK_TOKEN_FILE), or pass --public-reads (GUESTLIST_PUBLIC_READS=true) if \
             reads are meant to be open"
        );
    }
    Ok(())
}

/// Whether every listener is on loopback, as on a developer's machine.
fn all_loopback(args: &ServeArgs) -> bool {
    args.listen.ip().is_loopback() && args.admin_listen.is_none_or(|a| a.ip().is_loopback())
}

/// One line an operator can read the exposure from: who may check, who may
/// write (a count, never a token), TLS, and where each surface listens.
fn log_security_posture(
    tokens: &Tokens,
    tls: bool,
    listen: std::net::SocketAddr,
    admin: Option<std::net::SocketAddr>,
) {
    let checks = if tokens.has_check_token() {
        "check token or admin token"
    } else {
        "anyone who reaches the listener (no check token)"
    };
    let admin_listen = admin.map_or_else(|| "same as listen".to_string(), |a| a.to_string());
    tracing::info!(
        checks,
        writes = "admin token",
        admin_tokens = tokens.admin_count(),
        tls = if tls { "on" } else { "off" },
        %listen,
        admin_listen,
        "security posture"
    );
}

/// Opens the store, binds the listener and serves until `shutdown` resolves.
pub async fn serve(
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Configuration errors come before the store is opened or a port bound.
    let tokens = tokens(|name| std::env::var(name).ok(), all_loopback(&args))?;
    ensure_reads_guarded(&args, &tokens)?;
    let listener_options = http::ListenerOptions::from_args(&args.listener)?;
    let spec = StoreSpec::parse(&args.store.0)?;
    let (store, cache): (Arc<dyn Store>, Option<NearCache>) = match &spec {
        StoreSpec::Redis(url) => {
            let connect = args
                .redis_replicas
                .apply(args.redis_tls.connect_options()?)?;
            let redis = RedisStore::open(
                url,
                &connect,
                args.store_options(),
                Keys::new(args.redis_key_prefix.clone()),
            )
            .await
            .with_context(|| format!("opening the store {}", spec.redacted()))?;
            // In the background: start-up never waits on a slow or absent
            // Redis, and a Redis that comes up later is still checked.
            tokio::spawn({
                let redis = redis.clone();
                async move {
                    while redis.ready().await.is_err() {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    redis.check_settings().await
                }
            });
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
    let state = AppState::from(app::Services {
        checker: Checker::new(store.clone(), cache.clone()),
        store,
        tokens: Arc::new(tokens),
        max_upload_bytes: args.max_upload_bytes,
        max_audience: args.max_audience,
        uploads: app::slots::UploadSlots::new(args.max_concurrent_uploads),
        exports: app::slots::UploadSlots::new(args.max_concurrent_exports),
        metrics: Some(crate::telemetry::metrics()),
        portal: Arc::new(
            Portal::new(args.portal_idle_timeout)
                .confirming_removals_over(args.portal_confirm_removal_share),
        ),
        limits: app::Limits {
            request_timeout: args.listener.request_timeout,
            upload_idle_timeout: args.listener.upload_idle_timeout,
        },
        limiter: Arc::default(),
        proxies: Arc::new(TrustedProxies::new(args.trusted_proxies.clone())),
        meters: app::meters::Meters::default(),
    });
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let admin_listener = match args.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --admin-listen {addr}"))?,
        ),
        None => None,
    };
    let listen = listener.local_addr()?;
    let admin_listen = admin_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    tracing::info!(
        %listen,
        admin_listen = admin_listen.map(tracing::field::display),
        scheme = listener_options.scheme(),
        store = %spec.redacted(),
        kind = state.store.kind(),
        check_timeout = ?args.check_timeout,
        near_cache = cache.is_some(),
        "guestlist serving"
    );
    log_security_posture(
        &state.tokens,
        listener_options.tls.is_some(),
        listen,
        admin_listen,
    );
    let Some(admin_listener) = admin_listener else {
        http::listener::serve(listener, router(state), listener_options, shutdown).await?;
        tracing::info!("drained in-flight requests; bye");
        return Ok(());
    };
    // One signal stops both listeners; each drains its own connections.
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    let checks = http::listener::serve(
        listener,
        router_for(state.clone(), Surface::Checks),
        listener_options.clone(),
        stop.clone().cancelled_owned(),
    );
    let admin = http::listener::serve(
        admin_listener,
        router_for(state, Surface::Admin),
        listener_options,
        stop.clone().cancelled_owned(),
    );
    // A listener that fails stops the other, rather than leaving half a
    // service up.
    let (checks, admin) = tokio::join!(
        async {
            let result = checks.await;
            stop.cancel();
            result
        },
        async {
            let result = admin.await;
            stop.cancel();
            result
        }
    );
    checks.context("serving --listen")?;
    admin.context("serving --admin-listen")?;
    tracing::info!("drained in-flight requests; bye");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_tokens_parse_and_errors_never_echo_a_token() {
        let parsed = parse_named_tokens("alice:s3cret, bob:other:with:colons").unwrap();
        assert_eq!(parsed[0], ("alice".into(), Secret::new("s3cret")));
        assert_eq!(parsed[1], ("bob".into(), Secret::new("other:with:colons")));
        let e = parse_named_tokens("alice:s3cret,notoken")
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 2") && !e.contains("s3cret"), "{e}");
        assert!(parse_named_tokens("bad name:x").is_err());
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn every_token_shorter_than_16_characters_is_refused_by_its_name() {
        let long = "0123456789abcdef";
        let cases = [
            (
                "GUESTLIST_ADMIN_TOKEN",
                "short-admin",
                "GUESTLIST_ADMIN_TOKEN",
            ),
            ("GUESTLIST_ADMIN_TOKENS", "alice:short-alice", "\"alice\""),
            (
                "GUESTLIST_CHECK_TOKEN",
                "short-check",
                "GUESTLIST_CHECK_TOKEN",
            ),
        ];
        for (var, value, named) in cases {
            let mut pairs = vec![(var, value)];
            if var != "GUESTLIST_ADMIN_TOKEN" {
                pairs.push(("GUESTLIST_ADMIN_TOKEN", long));
            }
            let e = tokens(env(&pairs), true).unwrap_err().to_string();
            assert!(e.contains(named) && e.contains("16"), "{e}");
            assert!(!e.contains("short-"), "the value leaked: {e}");
        }
        let ok = tokens(
            env(&[
                ("GUESTLIST_ADMIN_TOKENS", &format!("alice:{long}")),
                ("GUESTLIST_CHECK_TOKEN", long),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(ok.admin_name(long.as_bytes()), Some("alice"));
        assert!(ok.has_check_token());
        let shown = format!("{ok:?}");
        assert!(shown.contains("alice") && !shown.contains(long), "{shown}");
    }
}
