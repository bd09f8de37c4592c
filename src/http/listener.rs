//! The listener: accepts connections (TLS when configured) and serves each
//! over HTTP/1.1 under the limits that keep slow or hostile clients from
//! starving the login path.
//!
//! - a connection cap: past it, new connections wait in the listen backlog;
//! - a header deadline: a request header must arrive whole within
//!   `header_timeout` of its first byte (or of the connection opening), so
//!   thousands of half-sent requests cannot pin connections; it bounds the
//!   TLS handshake too;
//! - an idle timeout between keep-alive requests (hyper's own header timer,
//!   which starts when a connection goes idle);
//! - a write deadline: an answer that moves no byte towards the client for
//!   `write_timeout` closes the connection, or a client that sends requests
//!   and never reads the answers would hold its slot for good;
//! - a drain deadline: on shutdown, accepting stops, idle connections close
//!   at once, and requests in flight get `drain_timeout` to finish.
//!
//! Why our own header deadline: hyper's timer starts when a connection goes
//! idle, so it cannot give a short header limit and a long idle limit at
//! once, and the idle limit must outlast a load balancer's (else it reuses a
//! connection just as we close it, and a login fails with a 502).

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

/// How connections are accepted and bounded; see the module docs.
#[derive(Clone)]
pub struct ListenerOptions {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// `Some` serves HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ListenerOptions {
    /// The defaults of `guestlist serve`.
    fn default() -> Self {
        ListenerOptions {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(25),
            tls: None,
        }
    }
}

impl ListenerOptions {
    pub fn from_args(args: &crate::config::ListenerArgs) -> anyhow::Result<ListenerOptions> {
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            _ => None,
        };
        anyhow::ensure!(
            args.max_connections > 0,
            "--max-connections must be at least 1"
        );
        // A zero deadline would fail every connection at once.
        for (flag, value) in [
            ("--header-timeout", args.header_timeout),
            ("--idle-timeout", args.idle_timeout),
            ("--write-timeout", args.write_timeout),
        ] {
            anyhow::ensure!(!value.is_zero(), "{flag} must be above zero");
        }
        Ok(ListenerOptions {
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            write_timeout: args.write_timeout,
            max_connections: args.max_connections,
            drain_timeout: args.drain_timeout,
            tls,
        })
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ListenerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let tls = options.tls.clone().map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let draining = CancellationToken::new();
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: retrying at once
                    // would spin, and the error is the operator's to see.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let conn = Conn {
            app: app.clone(),
            remote,
            options: options.clone(),
            draining: draining.clone(),
            closing: closing.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            let _slot = permit;
            conn.run(stream, tls).await;
        });
    }
    // New connections are refused from here on.
    drop(listener);
    draining.cancel();
    connections.close();
    if tokio::time::timeout(options.drain_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "drain deadline passed; closing connections with requests in flight"
        );
        closing.cancel();
        connections.wait().await;
    }
    Ok(())
}

/// One accepted connection and what it needs to serve itself.
struct Conn {
    app: Router,
    remote: SocketAddr,
    options: ListenerOptions,
    draining: CancellationToken,
    closing: CancellationToken,
}

impl Conn {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        // Login answers are small; Nagle's delay would dominate them.
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls else {
            return self.serve(stream).await;
        };
        let handshake = tokio::select! {
            result = tokio::time::timeout(self.options.header_timeout, acceptor.accept(stream)) => result,
            () = self.closing.cancelled() => return,
        };
        match handshake {
            Ok(Ok(stream)) => self.serve(stream).await,
            Ok(Err(e)) => {
                tracing::debug!(remote = %self.remote, error = %e, "TLS handshake failed")
            }
            Err(_) => tracing::debug!(remote = %self.remote, "TLS handshake timed out"),
        }
    }

    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let busy = Arc::new(AtomicBool::new(false));
        let io = TokioIo::new(Deadlines::new(stream, &self.options, busy.clone()));
        let (app, remote) = (self.app, self.remote);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // The portal's sign-in limiter keys on the client address.
            request.extensions_mut().insert(ConnectInfo(remote));
            let in_request = InRequest::start(busy.clone());
            let mut app = app.clone();
            async move {
                let response = app.call(request).await;
                drop(in_request);
                response
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.options.idle_timeout);
        let mut conn = pin!(builder.serve_connection(io, service));
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = self.draining.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    result = conn.as_mut() => result,
                    () = self.closing.cancelled() => return,
                }
            }
        };
        if let Err(e) = result {
            // Timeouts and clients hanging up are routine, not errors of ours.
            tracing::debug!(remote = %self.remote, error = %e, "connection ended");
        }
    }
}

/// Marks the connection busy with a request while it lives: the bytes read
/// then are its body, not a header.
struct InRequest(Arc<AtomicBool>);

impl InRequest {
    fn start(busy: Arc<AtomicBool>) -> InRequest {
        busy.store(true, Ordering::Release);
        InRequest(busy)
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The connection's I/O, failing reads once a request header has taken too
/// long, and writes once they have stalled too long.
///
/// The header clock starts when the connection opens, and again at the first
/// byte read while no request is being handled; a request starting, or a
/// response being written (a pipelined header waits behind it), stops it.
///
/// The write clock runs while writing, flushing or shutting down stays
/// pending, and restarts from nothing whenever one completes: it measures a
/// lack of progress, so a large answer to a slow reader is not cut.
struct Deadlines<S> {
    inner: S,
    header_limit: Duration,
    /// When the header clock started; `None` while it is stopped.
    header_since: Option<Instant>,
    /// One timer for the connection's life, never earlier than the header
    /// deadline it guards and re-armed only when it fires: starting the
    /// clock on every keep-alive request costs a clock read, where a fresh
    /// timer cost an allocation and two trips through the timer wheel.
    header_timer: Pin<Box<Sleep>>,
    busy: Arc<AtomicBool>,
    write_limit: Duration,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Deadlines<S> {
    fn new(inner: S, options: &ListenerOptions, busy: Arc<AtomicBool>) -> Self {
        let now = Instant::now();
        Deadlines {
            inner,
            header_limit: options.header_timeout,
            header_since: Some(now),
            header_timer: Box::pin(tokio::time::sleep_until(now + options.header_timeout)),
            busy,
            write_limit: options.write_timeout,
            write_deadline: None,
        }
    }

    /// Whether the running header clock has passed its limit. Registers
    /// the waker, so a stalled header wakes the connection when it has.
    fn header_late(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(since) = self.header_since else {
            return false;
        };
        let deadline = since + self.header_limit;
        // The timer is armed for this clock's deadline or an earlier
        // clock's (an earlier one): when it fires early, it is moved on.
        while self.header_timer.as_mut().poll(cx).is_ready() {
            if self.header_timer.deadline() >= deadline {
                return true;
            }
            self.header_timer.as_mut().reset(deadline);
        }
        false
    }

    /// Passes on what a write, flush or shutdown returned, or a timeout once
    /// it has been pending past the write limit.
    fn within_write_limit<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.write_deadline = None;
            return polled;
        }
        let limit = self.write_limit;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        // Polling registers the waker, so a stalled write wakes the
        // connection when its time is up.
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no data for the write timeout",
            )));
        }
        Poll::Pending
    }
}
impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let busy = this.busy.load(Ordering::Acquire);
        if busy {
            this.header_since = None;
        } else if this.header_late(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request header did not arrive in time",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got_bytes = matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        if got_bytes && !busy && this.header_since.is_none() {
            this.header_since = Some(Instant::now());
            // Registers the waker, so a stalled header wakes the connection.
            this.header_late(cx);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.header_since = None;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.within_write_limit(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.header_since = None;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.within_write_limit(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.within_write_limit(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.within_write_limit(cx, polled)
    }
}
