//! The fault-injection proxy (`common::proxy::FaultProxy`), checked against a
//! real `redis-server`.
//!
//! The proxy exists to test guestlist's Redis protocol under real network
//! faults rather than mocked ones: latency that pushes a check near its
//! deadline, a reply lost after `EXEC` or `EVALSHA` ran (the write landed,
//! the client cannot know), pub/sub cut alone while command connections
//! live on, and blackholes where nothing answers and nothing resets, so a
//! client learns only from its own timeout. These tests pin down that each
//! fault does exactly that, seen from a real client on a real socket.

mod common;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::RedisServer;
use common::proxy::FaultProxy;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, AsyncConnectionConfig, RedisResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

/// Long enough for a busy 2-core machine; a fault that should fire does so
/// in milliseconds.
const PATIENCE: Duration = Duration::from_secs(5);

fn proxy_to(redis: &RedisServer) -> FaultProxy {
    FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port)))
}

/// A multiplexed connection whose connect and every response time out
/// after `deadline`.
async fn connect(url: &str, deadline: Duration) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(deadline))
        .set_response_timeout(Some(deadline));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn ping(conn: &mut MultiplexedConnection) -> RedisResult<String> {
    redis::cmd("PING").query_async(conn).await
}

/// A command as a client sends it: a RESP array of bulk strings.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// Reads until `want` bytes have arrived.
async fn read_exactly(stream: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut buf = vec![0; want];
    timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("a reply in time")
        .expect("the reply");
    buf
}

async fn raw(proxy: &FaultProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
}

/// The next read on a connection the proxy reset.
async fn expect_reset(stream: &mut TcpStream) {
    let mut buf = [0; 64];
    let read = timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("the reset arrives in time");
    match read {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_and_get_pass_through_unchanged() {
    let redis = RedisServer::start();
    let proxy = proxy_to(&redis);
    let mut conn = connect(&proxy.url(), PATIENCE).await.unwrap();
    let () = conn.set("greeting", "hello\r\nworld").await.unwrap();
    let got: String = conn.get("greeting").await.unwrap();
    assert_eq!(got, "hello\r\nworld");
    assert_eq!(redis.cli(&["GET", "greeting"]), "hello\r\nworld\n");
    assert_eq!(proxy.connections(), 1);
    assert!(proxy.bytes_to_server() > 0 && proxy.bytes_to_client() > 0);
    assert_eq!(
        proxy.bytes_forwarded(),
        proxy.bytes_to_server() + proxy.bytes_to_client()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_applies_each_way_so_a_round_trip_pays_it_twice() {
    let redis = RedisServer::start();
    let proxy = proxy_to(&redis);
    let mut conn = connect(&proxy.url(), PATIENCE).await.unwrap();
    proxy.set_latency(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(ping(&mut conn).await.unwrap(), "PONG");
    let took = started.elapsed();
    // A lower bound only: a busy machine may add time, never remove it.
    assert!(took >= Duration::from_millis(400), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_latency_never_lets_later_bytes_overtake_earlier_ones() {
    let redis = RedisServer::start();
    let proxy = proxy_to(&redis);
    let mut stream = raw(&proxy).await;
    proxy.set_latency(Duration::from_millis(300));
    stream.write_all(&resp(&["ECHO", "first"])).await.unwrap();
    // Let the first chunk be read and queued under the high latency.
    sleep(Duration::from_millis(50)).await;
    proxy.set_latency(Duration::ZERO);
    stream.write_all(&resp(&["ECHO", "second"])).await.unwrap();
    let want = b"$5\r\nfirst\r\n$6\r\nsecond\r\n";
    assert_eq!(read_exactly(&mut stream, want.len()).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_lets_the_command_run_but_the_client_never_hears_back() {
    let redis = RedisServer::start();
    let proxy = proxy_to(&redis);
    let mut conn = connect(&proxy.url(), PATIENCE).await.unwrap();
    proxy.cut_after(b"INCR", 1);

    let started = Instant::now();
    let lost: RedisResult<i64> = conn.incr("k", 1).await;
    let err = lost.expect_err("the reply was lost");
    assert!(
        err.is_connection_dropped(),
        "a reset, not a timeout: {err:?}"
    );
    assert!(started.elapsed() < PATIENCE, "{err:?}");

    timeout(PATIENCE, proxy.wait_fired(1)).await.unwrap();
    let mut direct = connect(&redis.url(), PATIENCE).await.unwrap();
    let landed: i64 = direct.get("k").await.unwrap();
    assert_eq!(landed, 1, "the command ran although its reply was lost");

    // It was one cut: the next INCR, on a new connection, is answered.
    let mut again = connect(&proxy.url(), PATIENCE).await.unwrap();
    let second: i64 = again.incr("k", 1).await.unwrap();
    assert_eq!(second, 2);
    assert_eq!(proxy.fired(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_sees_a_pattern_split_across_two_reads() {
    let redis = RedisServer::start();
    let proxy = proxy_to(&redis);
    let mut stream = raw(&proxy).await;
    proxy.cut_after(b"INCR", 1);
    let command = resp(&["INCR", "split"]);
    // "*2\r\n$4\r\nIN" then "CR\r\n$5\r\nsplit\r\n".
    let (head, rest) = command.split_at(10);
    stream.write_all(head).await.unwrap();
    sleep(Duration::from_millis(50)).await;
    assert_eq!(proxy.fired(), 0);
    stream.write_all(rest).await.unwrap();

    expect_reset(&mut stream).await;
    timeout(PATIENCE, proxy.wait_fired(1)).await.unwrap();
    assert_eq!(redis.cli(&["GET", "split"]), "1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_times_clients_out_without_a_reset_and_off_serves_new_connections() {
    let redis = RedisServer::start();
    let proxy = proxy_to(&redis);
    let deadline = Duration::from_millis(300);
    let mut before = connect(&proxy.url(), deadline).await.unwrap();
    assert_eq!(ping(&mut before).await.unwrap(), "PONG");

    proxy.blackhole(true);
    let started = Instant::now();
    let err = ping(&mut before)
        .await
        .expect_err("no answer in a blackhole");
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        !err.is_connection_refusal() && !err.is_connection_dropped(),
        "{err:?}"
    );
    assert!(started.elapsed() >= deadline);
    // The socket stays open: nothing tells the client.
    assert!(proxy.connections() >= 1);

    // A new connection is accepted, then hears nothing either.
    let err = connect(&proxy.url(), deadline)
        .await
        .expect_err("no handshake in a blackhole");
    assert!(err.is_timeout(), "{err:?}");

    proxy.blackhole(false);
    let mut after = connect(&proxy.url(), PATIENCE).await.unwrap();
    assert_eq!(ping(&mut after).await.unwrap(), "PONG");
    // As documented: a connection that was open during the blackhole stays
    // dead, since its stream lost bytes.
    let err = ping(&mut before).await.expect_err("still blackholed");
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_matching_subscribe_cuts_pub_sub_alone() {
    let redis = RedisServer::start();
    let proxy = proxy_to(&redis);
    let client = redis::Client::open(proxy.url()).unwrap();
    let mut subscriber = client.get_async_pubsub().await.unwrap();
    subscriber.subscribe("news").await.unwrap();
    let mut commands = connect(&proxy.url(), PATIENCE).await.unwrap();
    let heard: i64 = commands.publish("news", "one").await.unwrap();
    assert_eq!(heard, 1);
    let message = timeout(PATIENCE, subscriber.on_message().next())
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(message.get_payload::<String>().unwrap(), "one");
    assert_eq!(proxy.connections(), 2);

    proxy.cut_matching(b"SUBSCRIBE");
    let ended = timeout(PATIENCE, subscriber.on_message().next())
        .await
        .expect("the subscriber notices in time");
    assert!(ended.is_none(), "the subscription's stream ends");
    timeout(PATIENCE, proxy.wait_connections(1)).await.unwrap();

    // The command connection lives on, and the server dropped the subscriber.
    assert_eq!(ping(&mut commands).await.unwrap(), "PONG");
    let heard: i64 = commands.publish("news", "two").await.unwrap();
    assert_eq!(heard, 0);

    // Still armed: a new subscriber is cut as it subscribes.
    let mut late = client.get_async_pubsub().await.unwrap();
    let refused = timeout(PATIENCE, late.subscribe("news"))
        .await
        .expect("cut at once, not left to time out");
    let err = refused.expect_err("no subscribe while armed");
    assert!(err.is_connection_dropped(), "{err:?}");

    proxy.stop_cut_matching();
    let mut back = client.get_async_pubsub().await.unwrap();
    back.subscribe("news").await.unwrap();
    let heard: i64 = commands.publish("news", "three").await.unwrap();
    assert_eq!(heard, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_matching_follows_command_names_not_arguments_whatever_the_split() {
    let redis = RedisServer::start();
    let proxy = proxy_to(&redis);
    // A lower-case subscribe, sent a byte at a time.
    let mut subscriber = raw(&proxy).await;
    for byte in resp(&["subscribe", "news"]) {
        subscriber.write_all(&[byte]).await.unwrap();
        sleep(Duration::from_millis(2)).await;
    }
    let confirmed = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n";
    assert_eq!(
        read_exactly(&mut subscriber, confirmed.len()).await,
        confirmed
    );
    // The word only inside arguments does not make a pub/sub connection,
    // even a whole SUBSCRIBE command quoted in a 1 MiB value.
    let mut other = raw(&proxy).await;
    other
        .write_all(&resp(&["ECHO", "SUBSCRIBE"]))
        .await
        .unwrap();
    let echoed = b"$9\r\nSUBSCRIBE\r\n";
    assert_eq!(read_exactly(&mut other, echoed.len()).await, echoed);
    let quoted = String::from_utf8(resp(&["SUBSCRIBE", "news"])).unwrap();
    let decoy = quoted.repeat((1 << 20) / quoted.len());
    other
        .write_all(&resp(&["SET", "decoy", &decoy]))
        .await
        .unwrap();
    assert_eq!(read_exactly(&mut other, 5).await, b"+OK\r\n");

    proxy.cut_matching(b"SUBSCRIBE");
    expect_reset(&mut subscriber).await;
    other.write_all(&resp(&["PING"])).await.unwrap();
    assert_eq!(read_exactly(&mut other, 7).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_all_resets_open_connections_and_new_ones_still_come_in() {
    let redis = RedisServer::start();
    let proxy = proxy_to(&redis);
    let mut stream = raw(&proxy).await;
    stream.write_all(&resp(&["PING"])).await.unwrap();
    assert_eq!(read_exactly(&mut stream, 7).await, b"+PONG\r\n");
    let mut conn = connect(&proxy.url(), PATIENCE).await.unwrap();
    assert_eq!(ping(&mut conn).await.unwrap(), "PONG");
    assert_eq!(proxy.connections(), 2);

    proxy.cut_all();
    expect_reset(&mut stream).await;
    timeout(PATIENCE, proxy.wait_connections(0)).await.unwrap();
    let err = ping(&mut conn).await.expect_err("the connection was reset");
    assert!(err.is_connection_dropped(), "{err:?}");

    let mut fresh = connect(&proxy.url(), PATIENCE).await.unwrap();
    assert_eq!(ping(&mut fresh).await.unwrap(), "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_every_connection_and_leaks_no_task() {
    let redis = RedisServer::start();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let proxy = proxy_to(&redis);
    let addr = proxy.addr();
    let mut idle = raw(&proxy).await;
    let mut busy = raw(&proxy).await;
    // One connection mid-delay, one blackholed at birth.
    proxy.set_latency(Duration::from_secs(60));
    busy.write_all(&resp(&["PING"])).await.unwrap();
    proxy.blackhole(true);
    let mut dark = raw(&proxy).await;
    timeout(PATIENCE, proxy.wait_connections(3)).await.unwrap();
    assert!(metrics.num_alive_tasks() > baseline);

    drop(proxy);
    for stream in [&mut idle, &mut busy, &mut dark] {
        let mut buf = [0; 16];
        let read = timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let started = Instant::now();
    while metrics.num_alive_tasks() > baseline {
        assert!(started.elapsed() < PATIENCE, "tasks outlived the proxy");
        sleep(Duration::from_millis(10)).await;
    }
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed");
}
