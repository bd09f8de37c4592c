//! Time limits applied inside the router: a deadline on every route but
//! audience uploads, and an idle limit on an upload's body instead, since an
//! honest upload of a large audience can take minutes but never stalls long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};

use super::ApiError;

/// The per-request limits of `guestlist serve`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deadline of one request on every route but uploads.
    pub request_timeout: Duration,
    /// Longest silence allowed in an upload's body.
    pub upload_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(30),
            upload_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Answers 503 `request_timeout` when the handler misses the deadline. Our
/// own middleware rather than tower-http's, so the answer is the usual JSON
/// error body (with the request id). Writes run detached (see
/// [`super::detached`]), so a write cut off here still finishes cleanly.
pub async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!(
            "the request took longer than {}; retry, or raise --request-timeout",
            humantime::format_duration(limit)
        ))
        .into_response(),
    }
}

/// `body` ending with an error once no bytes arrive for `idle`. The flag
/// tells the caller that the silence, not the client, ended it.
pub fn idle_bounded(body: Body, idle: Duration) -> (Body, Arc<AtomicBool>) {
    let cut = Arc::new(AtomicBool::new(false));
    let flag = cut.clone();
    let chunks = stream::unfold(Some(body.into_data_stream()), move |chunks| {
        let flag = flag.clone();
        async move {
            let mut chunks = chunks?;
            match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(axum::BoxError::from), Some(chunks))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::Release);
                    let e = format!("no data arrived for {}", humantime::format_duration(idle));
                    Some((Err(e.into()), None))
                }
            }
        }
    });
    (Body::from_stream(chunks), cut)
}
