//! What guestlist sends to Redis, as Redis saw it: a `redis-cli monitor`
//! capture, parsed, plus the Redis Cluster slot arithmetic needed to tell
//! whether a transaction or script could run on a cluster at all.
//!
//! Redis 7.0 prints a transaction as `MULTI`, its queued commands and `EXEC`
//! (other clients' commands may appear between `MULTI` and the rest), and
//! prints the commands a script runs right after the `EVAL`/`FCALL` line,
//! tagged `[<db> lua]`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One command as MONITOR printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// `127.0.0.1:54321`, `unix:/path`, or `lua` for a command run by a script.
    pub client: String,
    pub lua: bool,
    /// The command name first, then its arguments, unescaped.
    pub args: Vec<Vec<u8>>,
}

impl Command {
    /// The command name, upper-cased (clients may send any case).
    pub fn name(&self) -> String {
        self.args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// Argument `i` (0 is the name) as text, or "" when absent.
    pub fn arg(&self, i: usize) -> String {
        self.args
            .get(i)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default()
    }

    /// The keys this command touches, or `None` for a command the table
    /// below does not know.
    pub fn keys(&self) -> Option<Vec<&[u8]>> {
        let rest: Vec<&[u8]> = self.args.iter().skip(1).map(Vec::as_slice).collect();
        let keys = match self.name().as_str() {
            "MULTI" | "EXEC" | "DISCARD" | "PING" | "ECHO" | "PUBLISH" | "TIME" | "UNWATCH" => {
                Vec::new()
            }
            "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "WATCH" | "MGET" | "SINTER" | "SUNION"
            | "SDIFF" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" => rest,
            "RENAME" | "RENAMENX" | "SMOVE" | "COPY" | "LMOVE" | "RPOPLPUSH" => {
                rest.into_iter().take(2).collect()
            }
            "MSET" | "MSETNX" => rest.into_iter().step_by(2).collect(),
            "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => {
                let n: usize = self.arg(2).parse().ok()?;
                rest.into_iter().skip(2).take(n).collect()
            }
            "GET" | "SET" | "SETNX" | "SETEX" | "PSETEX" | "GETDEL" | "GETEX" | "INCR"
            | "INCRBY" | "DECR" | "DECRBY" | "APPEND" | "STRLEN" | "GETRANGE" | "SETRANGE"
            | "GETBIT" | "SETBIT" | "BITCOUNT" | "BITPOS" | "BITFIELD" | "BITFIELD_RO" | "SADD"
            | "SREM" | "SCARD" | "SISMEMBER" | "SMISMEMBER" | "SMEMBERS" | "SSCAN"
            | "SRANDMEMBER" | "SPOP" | "HSET" | "HMSET" | "HSETNX" | "HGET" | "HMGET"
            | "HGETALL" | "HDEL" | "HEXISTS" | "HKEYS" | "HVALS" | "HLEN" | "HINCRBY" | "HSCAN"
            | "EXPIRE" | "EXPIREAT" | "PEXPIRE" | "PEXPIREAT" | "PERSIST" | "TTL" | "PTTL"
            | "EXPIRETIME" | "PEXPIRETIME" | "TYPE" | "XADD" | "XRANGE" | "XREVRANGE" | "XLEN"
            | "XTRIM" => rest.into_iter().take(1).collect(),
            _ => return None,
        };
        Some(keys)
    }

    /// The command and its keys, for messages (arguments can be megabytes).
    pub fn summary(&self) -> String {
        let keys = match self.keys() {
            Some(keys) => keys
                .iter()
                .map(|k| format!("{} (slot {})", String::from_utf8_lossy(k), key_slot(k)))
                .collect::<Vec<_>>()
                .join(" "),
            None => "<unknown keys>".to_string(),
        };
        let who = if self.lua { " [lua]" } else { "" };
        if keys.is_empty() {
            format!("{}{who}", self.name())
        } else {
            format!("{}{who} {keys}", self.name())
        }
    }
}

/// Parses one MONITOR line: `<ts> [<db> <client>] "CMD" "arg" ...`.
pub fn parse_line(line: &str) -> Option<Command> {
    let open = line.find(" [")?;
    let after = &line[open + 2..];
    let (_db, after) = after.split_once(' ')?;
    // The client never contains `] "`; the arguments start right after it.
    let close = after.find("] \"")?;
    let client = after[..close].to_string();
    let args = parse_quoted(&after[close + 2..])?;
    if args.is_empty() {
        return None;
    }
    Some(Command {
        lua: client == "lua",
        client,
        args,
    })
}

/// Splits `"a" "b\"c" "\x01"` into unescaped arguments, undoing the
/// escaping Redis applies to MONITOR output (`sdscatrepr`).
fn parse_quoted(s: &str) -> Option<Vec<Vec<u8>>> {
    let bytes = s.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' => i += 1,
            b'"' => {
                i += 1;
                let mut arg = Vec::new();
                loop {
                    match *bytes.get(i)? {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' => {
                            let escaped = *bytes.get(i + 1)?;
                            i += 2;
                            arg.push(match escaped {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'a' => 0x07,
                                b'b' => 0x08,
                                b'x' => {
                                    let hex = std::str::from_utf8(bytes.get(i..i + 2)?).ok()?;
                                    i += 2;
                                    u8::from_str_radix(hex, 16).ok()?
                                }
                                other => other,
                            });
                        }
                        other => {
                            arg.push(other);
                            i += 1;
                        }
                    }
                }
                args.push(arg);
            }
            _ => return None,
        }
    }
    Some(args)
}

/// A running `redis-cli monitor`, collecting lines on a thread.
pub struct Monitor {
    port: u16,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Starts monitoring and returns once Redis has confirmed it (the `OK`
    /// line), so every command sent afterwards is captured.
    pub fn start(port: u16) -> Monitor {
        let mut child = Process::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "monitor"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli must be on PATH");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut buf = Vec::new();
            // Lines are ASCII (MONITOR escapes everything else); a big
            // argument makes one line megabytes long, which is fine.
            while matches!(stdout.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                sink.lock().unwrap().push(line);
                buf.clear();
            }
        });
        let monitor = Monitor {
            port,
            child,
            lines,
            reader: Some(reader),
        };
        monitor.wait_for(|l| l == "OK", "the MONITOR confirmation");
        monitor
    }

    fn wait_for(&self, found: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.lines.lock().unwrap().iter().any(|l| found(l)) {
            assert!(Instant::now() < deadline, "redis-cli monitor: no {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops monitoring and returns every command seen since `start`. A
    /// marker command is sent and awaited first, so nothing sent before
    /// `stop` is lost in transit.
    pub fn stop(mut self) -> Vec<Command> {
        let marker = format!("guestlist-monitor-end-{:016x}", rand::random::<u64>());
        Process::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "ECHO"])
            .arg(&marker)
            .output()
            .expect("redis-cli must be on PATH");
        self.wait_for(|l| l.contains(&marker), "end marker");
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("monitor reader thread");
        }
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        lines
            .iter()
            .skip_while(|l| *l != "OK")
            .skip(1)
            .take_while(|l| !l.contains(&marker))
            .map(|l| parse_line(l).unwrap_or_else(|| panic!("unparsable MONITOR line: {l}")))
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis Cluster's hash slot of `key`: CRC16 (XMODEM) of the key, or of its
/// hash tag (the bytes between the first `{` and the first `}` after it,
/// when there are any), modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % 16384
}

/// CRC16/XMODEM: polynomial 0x1021, initial value 0, no reflection.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Commands that Redis runs as one unit: a MULTI/EXEC of one client, or
/// one script call with the commands it ran.
#[derive(Debug, Clone)]
pub struct Group {
    pub client: String,
    /// `MULTI`, or the script command (`EVAL`, `EVALSHA`, `FCALL`, ...).
    pub kind: String,
    /// Indices into the captured commands, in order.
    pub commands: Vec<usize>,
}

const SCRIPT_COMMANDS: [&str; 6] = [
    "EVAL",
    "EVALSHA",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL",
    "FCALL_RO",
];

/// Groups the captured commands into transactions and script calls. A
/// script inside a transaction is a group of its own and also part of the
/// transaction's group; the `lua` commands after a script call are its own.
pub fn groups(commands: &[Command]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut open_multi: HashMap<String, usize> = HashMap::new();
    // The script whose commands MONITOR is printing, and its transaction.
    let mut script: Option<(usize, Option<usize>)> = None;
    for (i, cmd) in commands.iter().enumerate() {
        if cmd.lua {
            let (own, multi) = script.unwrap_or_else(|| {
                panic!("a script command with no script call before it: {cmd:?}")
            });
            groups[own].commands.push(i);
            if let Some(m) = multi {
                groups[m].commands.push(i);
            }
            continue;
        }
        script = None;
        let name = cmd.name();
        match name.as_str() {
            "MULTI" => {
                groups.push(Group {
                    client: cmd.client.clone(),
                    kind: name,
                    commands: vec![i],
                });
                open_multi.insert(cmd.client.clone(), groups.len() - 1);
            }
            "EXEC" | "DISCARD" => {
                if let Some(m) = open_multi.remove(&cmd.client) {
                    groups[m].commands.push(i);
                }
            }
            _ => {
                let multi = open_multi.get(&cmd.client).copied();
                if let Some(m) = multi {
                    groups[m].commands.push(i);
                }
                if SCRIPT_COMMANDS.contains(&name.as_str()) {
                    groups.push(Group {
                        client: cmd.client.clone(),
                        kind: name,
                        commands: vec![i],
                    });
                    script = Some((groups.len() - 1, multi));
                }
            }
        }
    }
    groups
}

/// Describes every transaction or script whose keys hash to more than one
/// cluster slot (each would fail with CROSSSLOT on Redis Cluster). Panics
/// on a command inside a group whose keys the table does not know, so an
/// unfamiliar command cannot slip through unchecked.
pub fn multi_slot_transactions(commands: &[Command]) -> Vec<String> {
    let mut found = Vec::new();
    for group in groups(commands) {
        let mut slots: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
        let mut names: Vec<String> = Vec::new();
        for &i in &group.commands {
            let cmd = &commands[i];
            let keys = cmd.keys().unwrap_or_else(|| {
                panic!(
                    "{} inside a {} group: add it to the key table in monitor.rs",
                    cmd.name(),
                    group.kind
                )
            });
            for key in keys {
                slots
                    .entry(key_slot(key))
                    .or_default()
                    .insert(String::from_utf8_lossy(key).into_owned());
            }
            let name = if cmd.lua {
                format!("{}[lua]", cmd.name())
            } else {
                cmd.name()
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if slots.len() > 1 {
            // A per-member transaction can touch thousands of keys.
            const SHOWN: usize = 4;
            let by_slot: Vec<String> = slots
                .iter()
                .map(|(slot, keys)| {
                    let mut shown: Vec<&str> =
                        keys.iter().take(SHOWN).map(String::as_str).collect();
                    let more = format!("… {} more", keys.len().saturating_sub(SHOWN));
                    if keys.len() > SHOWN {
                        shown.push(&more);
                    }
                    format!("slot {slot} [{}]", shown.join(", "))
                })
                .collect();
            found.push(format!(
                "{} from {} ({} commands: {}) spans {}",
                group.kind,
                group.client,
                group.commands.len(),
                names.join(" "),
                by_slot.join("; ")
            ));
        }
    }
    found
}
