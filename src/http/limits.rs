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

use crate::app::ApiError;

/// Answers 503 `request_timeout` when the handler misses the deadline. Our
/// own middleware rather than tower-http's, so the answer is the usual JSON
/// error body (with the request id). Writes run detached (see
/// [`crate::app::detached`]), so a write cut off here still finishes cleanly.
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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::middleware;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_request_past_its_deadline_gets_503_request_timeout_as_json() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "too late"
                }),
            )
            .route("/quick", get(|| async { "in time" }))
            .layer(middleware::from_fn_with_state(
                Duration::from_millis(50),
                deadline,
            ));
        let call = |path: &'static str| {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
        };

        let slow = call("/slow").await.unwrap();
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = slow.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "request_timeout");

        let quick = call("/quick").await.unwrap();
        assert_eq!(quick.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_silent_body_ends_in_an_error_and_a_steady_one_does_not() {
        let (steady, cut) = idle_bounded(Body::from("1\n2\n"), Duration::from_millis(50));
        assert_eq!(steady.collect().await.unwrap().to_bytes(), "1\n2\n");
        assert!(!cut.load(Ordering::Acquire));

        let (tx, rx) = tokio::sync::mpsc::channel::<Result<&'static str, std::io::Error>>(1);
        tx.send(Ok("1\n")).await.unwrap();
        let silent = Body::from_stream(tokio_stream_of(rx));
        let (silent, cut) = idle_bounded(silent, Duration::from_millis(50));
        let e = silent.collect().await.unwrap_err();
        assert!(e.to_string().contains("no data arrived for 50ms"), "{e}");
        assert!(cut.load(Ordering::Acquire));
        drop(tx);
    }

    /// The receiver as a stream that stays open while its sender lives.
    fn tokio_stream_of<T: Send + 'static>(
        rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Send + 'static {
        stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
    }
}
