//! The private Redis Cluster fixture itself: it forms, routes keys to the
//! master that serves them, replicates, fails over when a master dies,
//! takes the dead node back as a replica, and does all of it over TLS too.

mod common;

use std::time::Duration;

use common::tls::Pki;
use guestlist::redis_cluster::{RedisCluster, Role};

/// Keys until one lands on each of the current masters.
fn key_per_master(cluster: &RedisCluster) -> Vec<(String, u16)> {
    let masters = cluster.masters();
    let mut found: Vec<(String, u16)> = Vec::new();
    for i in 0..1000 {
        let key = format!("fixture:{i}");
        let master = cluster.master_for_key(&key).unwrap();
        if !found.iter().any(|(_, m)| *m == master) {
            found.push((key, master));
        }
        if found.len() == masters.len() {
            return found;
        }
    }
    panic!("no keys reach every master: {found:?} of {masters:?}");
}

fn get(cluster: &RedisCluster, port: u16, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut cluster.connection(port).unwrap())
        .unwrap()
}

/// Writes each key on its master and waits until a replica has it.
fn write_replicated(cluster: &RedisCluster, keys: &[(String, u16)]) {
    for (key, master) in keys {
        let mut conn = cluster.connection(*master).unwrap();
        let () = redis::cmd("SET")
            .arg(key)
            .arg(format!("value of {key}"))
            .query(&mut conn)
            .unwrap();
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut conn)
            .unwrap();
        assert!(acked >= 1, "no replica of {master} acknowledged {key}");
    }
}

fn fails_over_and_takes_the_dead_master_back(mut cluster: RedisCluster) {
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 6);
    assert_eq!(nodes.iter().filter(|n| n.role == Role::Master).count(), 3);
    assert_eq!(nodes.iter().filter(|n| n.role == Role::Replica).count(), 3);
    assert!(nodes.iter().all(|n| n.pid.is_some()));

    let keys = key_per_master(&cluster);
    assert_eq!(keys.len(), 3);
    write_replicated(&cluster, &keys);
    for (key, master) in &keys {
        assert_eq!(get(&cluster, *master, key), Some(format!("value of {key}")));
    }
    // A node that does not serve the key refuses it.
    let (key, master) = &keys[0];
    let other = keys[1].1;
    let moved = redis::cmd("GET")
        .arg(key)
        .query::<Option<String>>(&mut cluster.connection(other).unwrap())
        .unwrap_err();
    let (to, _slot) = moved.redirect_node().expect("a MOVED redirection");
    assert_eq!(to, format!("127.0.0.1:{master}"));
    // redis-cli -c follows that redirection.
    let followed = cluster.cli(other, &["-c", "GET", key]).unwrap();
    assert_eq!(followed.trim(), format!("value of {key}"));

    let dead = *master;
    cluster.kill(dead).unwrap();
    cluster
        .wait_for_failover(dead, Duration::from_secs(15))
        .unwrap();
    let promoted = cluster.master_for_key(key).unwrap();
    assert_ne!(promoted, dead);
    assert!(
        !keys.iter().any(|(_, m)| *m == promoted),
        "a replica took over"
    );
    assert_eq!(
        get(&cluster, promoted, key),
        Some(format!("value of {key}"))
    );
    for (key, _) in &keys[1..] {
        let master = cluster.master_for_key(key).unwrap();
        assert_eq!(get(&cluster, master, key), Some(format!("value of {key}")));
    }
    assert_eq!(cluster.masters().len(), 3);
    assert!(!cluster.masters().contains(&dead));
    let down = cluster.nodes();
    let down = down.iter().find(|n| n.port == dead).unwrap();
    assert_eq!((down.role, down.pid), (Role::Down, None));

    cluster.restart(dead).unwrap();
    let back = cluster.nodes();
    let back = back.iter().find(|n| n.port == dead).unwrap();
    assert_eq!(back.role, Role::Replica);
    assert_eq!(
        get(&cluster, promoted, key),
        Some(format!("value of {key}"))
    );
}

#[test]
fn three_masters_with_replicas_fail_over_a_killed_master() {
    fails_over_and_takes_the_dead_master_back(RedisCluster::start(3, 1).unwrap());
}

#[test]
fn a_tls_cluster_fails_over_over_tls() {
    let pki = Pki::new();
    let options = pki.cluster_options();
    let cluster = RedisCluster::start_with(3, 1, options).unwrap();
    assert!(cluster.urls().iter().all(|u| u.starts_with("rediss://")));
    assert!(cluster.cluster_url().starts_with("rediss+cluster://"));
    fails_over_and_takes_the_dead_master_back(cluster);
}

#[test]
fn a_cluster_without_replicas_lists_its_masters_and_pauses_nodes() {
    let mut cluster = RedisCluster::start(3, 0).unwrap();
    let url = cluster.cluster_url();
    let hosts = url.strip_prefix("redis+cluster://").unwrap();
    let ports: Vec<u16> = hosts
        .split(',')
        .map(|h| h.strip_prefix("127.0.0.1:").unwrap().parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 3);
    let mut masters = cluster.masters();
    masters.sort();
    let mut listed = ports.clone();
    listed.sort();
    assert_eq!(listed, masters);
    assert_eq!(cluster.urls().len(), 3);

    let stats = cluster
        .for_each_master(|_, conn| redis::cmd("CONFIG").arg("RESETSTAT").query::<()>(conn))
        .unwrap();
    assert_eq!(stats.len(), 3);

    cluster.stop(ports[0]).unwrap();
    assert_eq!(cluster.node_urls_live().len(), 2);
    let paused = cluster.nodes();
    let paused = paused.iter().find(|n| n.port == ports[0]).unwrap();
    assert_eq!(paused.role, Role::Stopped);
    assert_eq!(cluster.for_each_node(|p, _| Ok(p)).unwrap().len(), 2);
    cluster.cont(ports[0]).unwrap();
    let pong: String = redis::cmd("PING")
        .query(&mut cluster.connection(ports[0]).unwrap())
        .unwrap();
    assert_eq!(pong, "PONG");
}
