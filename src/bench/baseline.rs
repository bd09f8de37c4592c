//! The yardstick for the HTTP login path: a bare axum route of the same
//! shape as `GET /v1/campaigns/{id}/members/{user_id}`, answering fixed JSON
//! bytes through plain `axum::serve`. It has none of the service's
//! middleware, timeouts or store, so the gap between it and the real route
//! under the same load is what the service's own layers cost.
//!
//! The route still extracts both path segments, since any real handler of
//! that pattern pays for routing and extraction; it does not parse them or
//! serialize anything, which makes it the strictest fair baseline.

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The route pattern of the member check, as `http::checks` declares it.
pub const MEMBER_ROUTE: &str = "/v1/campaigns/{id}/members/{user_id}";

/// Serves `body` as `application/json` on [`MEMBER_ROUTE`] at a free
/// loopback port until the task is aborted. Call inside a Tokio runtime.
pub async fn start_bare_route(
    body: Bytes,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        MEMBER_ROUTE,
        get(move |Path((_id, _user)): Path<(String, String)>| {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
        }),
    );
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    #[tokio::test]
    async fn the_bare_route_answers_the_given_bytes_as_json_on_the_member_path() {
        let body = Bytes::from_static(br#"{"campaign":"c","user_id":7,"member":true}"#);
        let (addr, task) = start_bare_route(body.clone()).await.unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"GET /v1/campaigns/c/members/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{answer}"
        );
        assert!(
            answer.ends_with(std::str::from_utf8(&body).unwrap()),
            "{answer}"
        );

        let mut other = TcpStream::connect(addr).await.unwrap();
        other
            .write_all(b"GET /v1/campaigns/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        other.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 404"));
        task.abort();
    }
}
