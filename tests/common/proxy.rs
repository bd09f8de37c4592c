//! A TCP proxy on loopback between a Redis client and a real `redis-server`,
//! which a test drives to inject network faults: added latency, resets,
//! blackholes, lost replies, and cuts aimed at one kind of connection.
//!
//! Each accepted connection gets its own connection to the upstream and one
//! task that relays both directions. Per direction, a reader stamps every
//! chunk with the time it may leave (now + latency) and queues it; a writer
//! sends the chunks in order once due. Faults are decided where the bytes
//! are: a reader sees what the client sent (patterns, command names), a
//! writer is the last point before bytes leave (blackhole, muted replies).
//!
//! Invariants:
//! - it binds and connects to loopback only;
//! - bytes are never reordered, whatever the latency does meanwhile;
//! - a "reset" is a real RST (`SO_LINGER` 0 before close), never a FIN;
//! - dropping the proxy aborts the accept task, which owns every connection
//!   task, so no task or socket outlives it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until, timeout};

/// Bytes asked of the kernel per read.
const READ_SIZE: usize = 16 * 1024;
/// Chunks queued per direction: bounds memory when latency holds back a
/// large upload, by making the reader wait (TCP back-pressure to the sender).
const QUEUE: usize = 64;
/// Bytes of the client's stream kept from one read to the next, so that a
/// pattern split across two reads is still seen. Patterns may be one longer.
const TAIL: usize = 255;
/// How long a lost-reply connection waits for the server to close its side.
const DRAIN: Duration = Duration::from_secs(10);

/// A fault-injecting proxy in front of one upstream address. Create it inside
/// a tokio runtime; drop it to close everything.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// State that the handle and every connection task see. Std mutexes are
/// right here: each is held for a few instructions and never across an
/// `.await`.
struct Shared {
    upstream: SocketAddr,
    latency_micros: AtomicU64,
    /// Guarded by `conns`' lock when set, so a connection is either accepted
    /// before the switch (and marked by it) or sees the switch at birth.
    blackhole: AtomicBool,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    open: watch::Sender<usize>,
    lost_reply: Mutex<LostReply>,
    fired: watch::Sender<usize>,
    /// Upper-cased command-name patterns that get a connection reset.
    matching: Mutex<Vec<Vec<u8>>>,
    to_server: AtomicU64,
    to_client: AtomicU64,
}

#[derive(Default)]
struct LostReply {
    pattern: Vec<u8>,
    remaining: usize,
}

/// One client connection as the controls see it.
#[derive(Default)]
struct Conn {
    /// Asks the connection's task to reset the client now. `notify_one`
    /// keeps a permit, so a request made before the task waits is not lost.
    kill: Notify,
    /// Latched: once bytes have been dropped the stream is out of step, and
    /// resuming would hand the client a reply to a command it gave up on.
    blackholed: AtomicBool,
    /// Set before a lost-reply chunk is written, so that no reply to it (or
    /// to anything sent with it) reaches the client.
    mute_client: AtomicBool,
    /// Upper-cased names of the commands this client has sent.
    commands: Mutex<HashSet<Vec<u8>>>,
}

impl Conn {
    fn blackholed(&self) -> bool {
        self.blackholed.load(Ordering::SeqCst)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards each connection to
    /// `upstream`, which must be on 127.0.0.1 too.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        assert_eq!(
            upstream.ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "the proxy only forwards to 127.0.0.1"
        );
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("binding a loopback port for the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let listener = TcpListener::from_std(listener).expect("FaultProxy needs a tokio runtime");
        let shared = Arc::new(Shared {
            upstream,
            latency_micros: AtomicU64::new(0),
            blackhole: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            open: watch::Sender::new(0),
            lost_reply: Mutex::new(LostReply::default()),
            fired: watch::Sender::new(0),
            matching: Mutex::new(Vec::new()),
            to_server: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        FaultProxy {
            addr,
            shared,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// One-way delay added to every chunk in either direction, so a round
    /// trip costs twice this. A change applies to chunks read from then on;
    /// chunks already queued keep their time, and order is always kept.
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.shared.latency_micros.store(micros, Ordering::SeqCst);
    }

    /// Resets (RST) every open client connection; their upstream connections
    /// are closed, so the server drops those clients too. Returns at once;
    /// each reset lands when its task next runs. New connections are
    /// accepted as usual.
    pub fn cut_all(&self) {
        for conn in lock(&self.shared.conns).values() {
            conn.kill.notify_one();
        }
    }

    /// While on, every byte read in either direction is dropped, with no
    /// reset and no close: clients learn only by their own timeouts.
    /// Connections accepted meanwhile get no upstream at all.
    ///
    /// Every connection open while it is on stays dead after it is turned
    /// off (its stream lost bytes, so it could not resume in step); off
    /// restores forwarding for connections accepted afterwards.
    pub fn blackhole(&self, on: bool) {
        let conns = lock(&self.shared.conns);
        self.shared.blackhole.store(on, Ordering::SeqCst);
        if on {
            for conn in conns.values() {
                conn.blackholed.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The next `times` client→server chunks containing `pattern` (exact
    /// bytes, anywhere: a command name, a key, a script's SHA) are forwarded
    /// to the server, and then the client is reset before any reply reaches
    /// it: the command ran, the client never learns. Replaces any earlier
    /// setting; `times == 0` disarms. At most `TAIL + 1` bytes.
    pub fn cut_after(&self, pattern: &[u8], times: usize) {
        assert!(
            !pattern.is_empty() && pattern.len() <= TAIL + 1,
            "a cut_after pattern is 1 to {} bytes",
            TAIL + 1
        );
        *lock(&self.shared.lost_reply) = LostReply {
            pattern: pattern.to_vec(),
            remaining: times,
        };
    }

    /// How many lost-reply cuts have completed since the proxy started. One
    /// counts once its client is reset and the server has closed its side,
    /// which Redis does only after running every command it received (or
    /// after 10 s, if the server never does).
    pub fn fired(&self) -> usize {
        *self.shared.fired.borrow()
    }

    /// Waits until `fired() >= n`.
    pub async fn wait_fired(&self, n: usize) {
        let mut fired = self.shared.fired.subscribe();
        fired
            .wait_for(|&f| f >= n)
            .await
            .expect("the proxy holds the sender");
    }

    /// Resets every connection that has sent a command whose name contains
    /// `pattern` (ASCII case-insensitive): those that already have, now, and
    /// any that does later, as soon as it sends one; that last chunk is not
    /// forwarded. It stays armed until [`FaultProxy::stop_cut_matching`], so
    /// `b"SUBSCRIBE"` is a pub/sub outage that leaves command connections
    /// alone. Command names are followed through the RESP stream (inline
    /// commands too), so each connection's role is known without keeping the
    /// bytes it sent; a stream that does not parse is no longer followed.
    pub fn cut_matching(&self, pattern: &[u8]) {
        assert!(!pattern.is_empty(), "an empty pattern would match anything");
        let pattern = pattern.to_ascii_uppercase();
        lock(&self.shared.matching).push(pattern.clone());
        // After arming: a connection recording a new name either sees the
        // pattern or has recorded the name before this scan (see `CommandNames::feed`).
        for conn in lock(&self.shared.conns).values() {
            if lock(&conn.commands).iter().any(|n| contains(n, &pattern)) {
                conn.kill.notify_one();
            }
        }
    }

    /// Disarms every `cut_matching` pattern.
    pub fn stop_cut_matching(&self) {
        lock(&self.shared.matching).clear();
    }

    /// Client connections open now (accepted and not yet closed).
    pub fn connections(&self) -> usize {
        *self.shared.open.borrow()
    }

    /// Waits until exactly `n` client connections are open.
    pub async fn wait_connections(&self, n: usize) {
        let mut open = self.shared.open.subscribe();
        open.wait_for(|&o| o == n)
            .await
            .expect("the proxy holds the sender");
    }

    /// Bytes written to the server so far.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.to_server.load(Ordering::SeqCst)
    }

    /// Bytes written to clients so far.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }

    /// Bytes forwarded in both directions so far.
    pub fn bytes_forwarded(&self) -> u64 {
        self.bytes_to_server() + self.bytes_to_client()
    }
}

impl Drop for FaultProxy {
    /// The accept task owns the listener and the `JoinSet` of connection
    /// tasks; aborting it drops both, which aborts every connection task
    /// and closes its sockets.
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Shared {
    fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_micros.load(Ordering::SeqCst))
    }

    /// Counts a connection as open until the returned guard drops, which
    /// happens even when its task is aborted.
    fn register(self: &Arc<Self>) -> (Arc<Conn>, Registered) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let conn = Arc::new(Conn::default());
        let mut conns = lock(&self.conns);
        if self.blackhole.load(Ordering::SeqCst) {
            conn.blackholed.store(true, Ordering::SeqCst);
        }
        conns.insert(id, conn.clone());
        self.open.send_replace(conns.len());
        let guard = Registered {
            shared: self.clone(),
            id,
        };
        (conn, guard)
    }

    /// Whether this chunk uses up one armed lost-reply cut. `tail` is the end
    /// of what the client sent before `data`.
    fn take_lost_reply(&self, tail: &[u8], data: &[u8]) -> bool {
        let mut lost = lock(&self.lost_reply);
        if lost.remaining == 0 || !sent(tail, data, &lost.pattern) {
            return false;
        }
        lost.remaining -= 1;
        true
    }

    fn cut_matches(&self, name: &[u8]) -> bool {
        lock(&self.matching).iter().any(|p| contains(name, p))
    }
}

struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut conns = lock(&self.shared.conns);
        conns.remove(&self.id);
        self.shared.open.send_replace(conns.len());
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    // Registered here, not in the task, so that a control
                    // called right after the client connects already sees it.
                    let (conn, guard) = shared.register();
                    tasks.spawn(serve(client, conn, shared.clone(), guard));
                }
                // Out of descriptors, or a connection that died in the
                // backlog: keep serving the others.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reaps finished tasks so the set holds only live ones.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Sends a reset instead of a FIN: with `SO_LINGER` 0, close discards
/// unsent data and answers with RST.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn serve(client: TcpStream, conn: Arc<Conn>, shared: Arc<Shared>, _open: Registered) {
    let _ = client.set_nodelay(true);
    if conn.blackholed() {
        swallow(client, &conn).await;
        return;
    }
    let upstream = tokio::select! {
        _ = conn.kill.notified() => return reset(client),
        upstream = TcpStream::connect(shared.upstream) => upstream,
    };
    // An upstream that refuses is passed on as a reset, the nearest a
    // proxy that has already accepted can come to a refusal.
    let Ok(mut upstream) = upstream else {
        return reset(client);
    };
    let _ = upstream.set_nodelay(true);
    let mut client = client;
    match relay(&mut client, &mut upstream, &conn, &shared).await {
        End::Closed => {}
        End::Reset => reset(client),
        End::LostReply => {
            reset(client);
            // Let the server run what it was sent: a half-close, then its
            // replies are read and dropped until it closes (Redis closes on
            // EOF only after processing everything before it).
            let _ = upstream.shutdown().await;
            let mut sink = tokio::io::sink();
            let _ = timeout(DRAIN, tokio::io::copy(&mut upstream, &mut sink)).await;
            shared.fired.send_modify(|f| *f += 1);
        }
    }
}

/// A connection accepted during a blackhole: reads and drops until the
/// client leaves or a cut resets it.
async fn swallow(mut client: TcpStream, conn: &Conn) {
    let mut buf = vec![0; READ_SIZE];
    loop {
        tokio::select! {
            _ = conn.kill.notified() => return reset(client),
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

/// How a relayed connection ended, and so what happens to its sockets.
#[derive(Clone, Copy)]
enum End {
    /// Both directions finished, or the client failed: just close.
    Closed,
    /// A cut, or the upstream failed: reset the client.
    Reset,
    /// A lost-reply chunk went to the server: reset the client, let the
    /// server finish.
    LostReply,
}

/// A chunk in flight through one direction's queue.
struct Chunk {
    data: Bytes,
    due: Instant,
    /// The lost-reply chunk: after it is written the connection ends.
    lose: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Toward {
    Server,
    Client,
}

async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    conn: &Conn,
    shared: &Shared,
) -> End {
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = upstream.split();
    let (up_tx, up_rx) = mpsc::channel(QUEUE);
    let (down_tx, down_rx) = mpsc::channel(QUEUE);
    // One task drives all four halves, so a cut ends them together, and
    // ends them before they are polled again.
    let flows = async {
        tokio::try_join!(
            read_client(&mut from_client, up_tx, conn, shared),
            write(&mut to_server, up_rx, Toward::Server, conn, shared),
            read_server(&mut from_server, down_tx, conn, shared),
            write(&mut to_client, down_rx, Toward::Client, conn, shared),
        )
    };
    tokio::select! {
        _ = conn.kill.notified() => End::Reset,
        ended = flows => match ended {
            Ok(_) => End::Closed,
            Err(end) => end,
        },
    }
}

async fn read_client(
    from: &mut (impl AsyncRead + Unpin),
    queue: mpsc::Sender<Chunk>,
    conn: &Conn,
    shared: &Shared,
) -> Result<(), End> {
    let mut buf = BytesMut::new();
    let mut tail = Vec::with_capacity(2 * TAIL);
    let mut names = CommandNames::default();
    loop {
        buf.reserve(READ_SIZE);
        let n = from.read_buf(&mut buf).await.map_err(|_| End::Closed)?;
        let blackholed = conn.blackholed();
        if n == 0 {
            // EOF goes on as a half-close, unless nothing goes on: then the
            // client has left and no one is listening any more.
            return if blackholed { Err(End::Closed) } else { Ok(()) };
        }
        let data = buf.split().freeze();
        if blackholed {
            continue;
        }
        if names.feed(&data, conn, shared) {
            return Err(End::Reset);
        }
        let lose = shared.take_lost_reply(&tail, &data);
        tail.extend_from_slice(&data[data.len().saturating_sub(TAIL)..]);
        tail.drain(..tail.len().saturating_sub(TAIL));
        let due = Instant::now() + shared.latency();
        if queue.send(Chunk { data, due, lose }).await.is_err() || lose {
            // The writer is gone, or is about to end the connection: stop
            // reading, but hold the queue open so it is not taken for EOF.
            return std::future::pending().await;
        }
    }
}

async fn read_server(
    from: &mut (impl AsyncRead + Unpin),
    queue: mpsc::Sender<Chunk>,
    conn: &Conn,
    shared: &Shared,
) -> Result<(), End> {
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(READ_SIZE);
        let read = from.read_buf(&mut buf).await;
        if conn.blackholed() {
            // A blackhole passes no close and no failure either.
            if !matches!(read, Ok(n) if n > 0) {
                return std::future::pending().await;
            }
            buf.clear();
            continue;
        }
        match read {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(_) => return Err(End::Reset),
        }
        let data = buf.split().freeze();
        let due = Instant::now() + shared.latency();
        let chunk = Chunk {
            data,
            due,
            lose: false,
        };
        if queue.send(chunk).await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Writes one direction's chunks, each once due, in the order read.
async fn write(
    to: &mut (impl AsyncWrite + Unpin),
    mut queue: mpsc::Receiver<Chunk>,
    toward: Toward,
    conn: &Conn,
    shared: &Shared,
) -> Result<(), End> {
    let (failed, counter) = match toward {
        Toward::Server => (End::Reset, &shared.to_server),
        Toward::Client => (End::Closed, &shared.to_client),
    };
    while let Some(chunk) = queue.recv().await {
        if chunk.due > Instant::now() {
            sleep_until(chunk.due).await;
        }
        // Checked after the wait: a fault switched on meanwhile applies to
        // bytes still held back.
        let muted = toward == Toward::Client && conn.mute_client.load(Ordering::SeqCst);
        if conn.blackholed() || muted {
            continue;
        }
        if chunk.lose {
            conn.mute_client.store(true, Ordering::SeqCst);
        }
        to.write_all(&chunk.data).await.map_err(|_| failed)?;
        counter.fetch_add(chunk.data.len() as u64, Ordering::SeqCst);
        if chunk.lose {
            return Err(End::LostReply);
        }
    }
    if conn.blackholed() {
        return std::future::pending().await;
    }
    // The reader saw EOF: pass the half-close on.
    let _ = to.shutdown().await;
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `pattern` ends within `data`, given the `tail` of what came
/// before it. A match wholly inside the tail was seen with the last chunk.
fn sent(tail: &[u8], data: &[u8], pattern: &[u8]) -> bool {
    if contains(data, pattern) {
        return true;
    }
    let k = pattern.len() - 1;
    let mut seam = tail[tail.len().saturating_sub(k)..].to_vec();
    seam.extend_from_slice(&data[..k.min(data.len())]);
    contains(&seam, pattern)
}

/// Longest command name kept; real ones are far shorter.
const NAME_MAX: usize = 32;
/// Longest header or inline line followed before giving up.
const LINE_MAX: usize = 4096;
/// Distinct command names recorded per connection.
const NAMES_MAX: usize = 256;

/// Follows a client's RESP stream just far enough to name each command:
/// array and bulk headers are parsed, argument bytes are skipped by length.
/// A stream it cannot parse is no longer followed (nothing is cut for it).
#[derive(Default)]
struct CommandNames {
    state: Resp,
    line: Vec<u8>,
    name: Vec<u8>,
}

#[derive(Default, Clone, Copy)]
enum Resp {
    /// A command starts: an array header (`*N`) or an inline command line.
    #[default]
    Start,
    /// The `$len` line of the next argument; `first` is the command name.
    Header {
        args: u64,
        first: bool,
    },
    /// Inside an argument: `left` bytes remain, its CRLF included.
    Body {
        left: u64,
        args: u64,
        first: bool,
    },
    Lost,
}

impl CommandNames {
    /// Follows `data`, records each new command name in `conn`, and says
    /// whether one matches an armed `cut_matching` pattern.
    fn feed(&mut self, data: &[u8], conn: &Conn, shared: &Shared) -> bool {
        let mut cut = false;
        self.follow(data, &mut |name| {
            let mut commands = lock(&conn.commands);
            if commands.contains(name) || commands.len() >= NAMES_MAX {
                return;
            }
            commands.insert(name.to_vec());
            drop(commands);
            // Only a first sighting needs checking: a name recorded
            // earlier was checked then, or by `cut_matching`'s scan.
            cut |= shared.cut_matches(name);
        });
        cut
    }

    fn follow(&mut self, mut data: &[u8], found: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            match self.state {
                Resp::Lost => return,
                Resp::Body { left, args, first } => {
                    let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if first {
                        let payload = usize::try_from(left.saturating_sub(2))
                            .unwrap_or(usize::MAX)
                            .min(n);
                        let room = NAME_MAX.saturating_sub(self.name.len());
                        self.name.extend_from_slice(&data[..payload.min(room)]);
                    }
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = if left > 0 {
                        Resp::Body { left, args, first }
                    } else {
                        if first {
                            self.emit(found);
                        }
                        match args - 1 {
                            0 => Resp::Start,
                            args => Resp::Header { args, first: false },
                        }
                    };
                }
                Resp::Start | Resp::Header { .. } => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let part = &data[..end.unwrap_or(data.len())];
                    if self.line.len() + part.len() > LINE_MAX {
                        self.state = Resp::Lost;
                        return;
                    }
                    self.line.extend_from_slice(part);
                    let Some(end) = end else { return };
                    data = &data[end + 1..];
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.state = self.on_line(&line, found);
                    self.line = line;
                    self.line.clear();
                }
            }
        }
    }

    fn on_line(&mut self, line: &[u8], found: &mut impl FnMut(&[u8])) -> Resp {
        let number =
            |digits: &[u8]| -> Option<u64> { std::str::from_utf8(digits).ok()?.parse().ok() };
        match (self.state, line.first()) {
            (Resp::Start, None) => Resp::Start,
            (Resp::Start, Some(b'*')) => match number(&line[1..]) {
                Some(0) => Resp::Start,
                Some(args) => Resp::Header { args, first: true },
                None => Resp::Lost,
            },
            (Resp::Start, Some(_)) => {
                // An inline command: its first word is the name.
                let word = line
                    .split(|b| b.is_ascii_whitespace())
                    .find(|w| !w.is_empty());
                if let Some(word) = word {
                    self.name
                        .extend_from_slice(&word[..word.len().min(NAME_MAX)]);
                    self.emit(found);
                }
                Resp::Start
            }
            (Resp::Header { args, first }, Some(b'$')) => match number(&line[1..]) {
                Some(len) => Resp::Body {
                    left: len.saturating_add(2),
                    args,
                    first,
                },
                None => Resp::Lost,
            },
            _ => Resp::Lost,
        }
    }

    fn emit(&mut self, found: &mut impl FnMut(&[u8])) {
        self.name.make_ascii_uppercase();
        found(&self.name);
        self.name.clear();
    }
}
