//! A batch of commands sent together: one pipeline on a single Redis, one
//! pipeline per hash slot on Redis Cluster.
//!
//! The redis crate's cluster client refuses a pipeline whose commands hash
//! to different slots, and a `redis::Pipeline` does not reveal which of its
//! commands were ignored, so it cannot be split after the fact. A batch
//! records both, so [`super::conn::Conn`] can split it by slot, send the
//! parts to their nodes in parallel and put the replies back in order.
//!
//! Commands of one slot keep their relative order (they travel in one
//! pipeline to one node); commands of different slots have no order between
//! them, as on any cluster. An atomic batch is one MULTI and must stay in
//! one slot, which every caller guarantees by construction (see `keys.rs`).

use std::collections::HashMap;

use redis::cluster_routing::Slot;
use redis::{Arg, Cmd, Pipeline, ToRedisArgs, Value};

/// Commands to send in one round trip per node.
#[derive(Clone, Default)]
pub(crate) struct Batch {
    cmds: Vec<Cmd>,
    ignored: Vec<bool>,
    atomic: bool,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch::default()
    }

    /// Makes the batch one MULTI/EXEC transaction (all keys in one slot).
    pub(crate) fn atomic(&mut self) -> &mut Batch {
        self.atomic = true;
        self
    }

    /// Starts a command; [`Batch::arg`] adds to it.
    pub(crate) fn cmd(&mut self, name: &str) -> &mut Batch {
        self.add_command(redis::cmd(name))
    }

    pub(crate) fn add_command(&mut self, cmd: Cmd) -> &mut Batch {
        self.cmds.push(cmd);
        self.ignored.push(false);
        self
    }

    /// Adds an argument to the last command.
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Batch {
        self.cmds
            .last_mut()
            .expect("Batch::arg follows Batch::cmd")
            .arg(arg);
        self
    }

    /// Drops the last command's reply from the batch's result.
    pub(crate) fn ignore(&mut self) -> &mut Batch {
        *self
            .ignored
            .last_mut()
            .expect("Batch::ignore follows Batch::cmd") = true;
        self
    }

    pub(crate) fn hgetall(&mut self, key: impl ToRedisArgs) -> &mut Batch {
        self.cmd("HGETALL").arg(key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.cmds.len()
    }

    pub(crate) fn is_atomic(&self) -> bool {
        self.atomic
    }

    /// The commands, in order.
    pub(crate) fn cmds(&self) -> impl Iterator<Item = &Cmd> {
        self.cmds.iter()
    }

    /// The whole batch as one pipeline, for a single Redis.
    pub(crate) fn to_pipeline(&self) -> Pipeline {
        let mut pipe = Pipeline::with_capacity(self.cmds.len());
        if self.atomic {
            pipe.atomic();
        }
        for (cmd, ignored) in self.cmds.iter().zip(&self.ignored) {
            pipe.add_command(cmd.clone());
            if *ignored {
                pipe.ignore();
            }
        }
        pipe
    }

    /// The batch split by hash slot: one pipeline per slot (in order of
    /// first appearance) with the positions of its commands. Commands
    /// without a key (none are sent today) form one group of their own.
    /// Replies are read in full, errors included, so
    /// [`Batch::reassemble`] can apply the ignores and report errors as a
    /// single pipeline would.
    pub(crate) fn split_by_slot(&self) -> Vec<(Pipeline, Vec<usize>)> {
        let mut groups: Vec<(Pipeline, Vec<usize>)> = Vec::new();
        let mut by_slot: HashMap<Option<Slot>, usize> = HashMap::new();
        for (i, cmd) in self.cmds.iter().enumerate() {
            let group = *by_slot.entry(slot_of(cmd)).or_insert_with(|| {
                let mut pipe = Pipeline::new();
                pipe.ignore_errors();
                groups.push((pipe, Vec::new()));
                groups.len() - 1
            });
            groups[group].0.add_command(cmd.clone());
            groups[group].1.push(i);
        }
        groups
    }

    /// Puts the replies of [`Batch::split_by_slot`]'s groups back in the
    /// batch's order, failing on the first server error as one pipeline
    /// would, and drops the replies of ignored commands.
    pub(crate) fn reassemble(
        &self,
        groups: Vec<(Vec<usize>, Vec<Value>)>,
    ) -> redis::RedisResult<Value> {
        let mut replies: Vec<Option<Value>> = vec![None; self.cmds.len()];
        for (positions, values) in groups {
            if positions.len() != values.len() {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "a pipeline answered with the wrong number of replies",
                )));
            }
            for (i, v) in positions.into_iter().zip(values) {
                replies[i] = Some(v);
            }
        }
        let mut kept = Vec::with_capacity(replies.len());
        for (reply, ignored) in replies.into_iter().zip(&self.ignored) {
            let reply = reply.ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::Client, "a pipeline reply is missing"))
            })?;
            let reply = reply.extract_error()?;
            if !ignored {
                kept.push(reply);
            }
        }
        Ok(Value::Array(kept))
    }
}

/// The slot of a command's first key.
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    key_of(cmd).map(Slot::for_key)
}

/// A command's first key: the argument after the name, or for a script the
/// first of its keys. Every command guestlist batches names its key there.
pub(crate) fn key_of(cmd: &Cmd) -> Option<&[u8]> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .take(4)
        .collect();
    let name = args.first()?;
    if name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVALSHA") {
        let keys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
        if keys == 0 {
            return None;
        }
        return args.get(3).copied();
    }
    args.get(1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_batch_reassembles_in_order_without_ignored_replies() {
        let mut batch = Batch::new();
        batch.cmd("GET").arg("{a}x");
        batch.cmd("SET").arg("{b}y").arg(1).ignore();
        batch.cmd("GET").arg("{a}z");
        batch.cmd("GET").arg("{b}w");
        let groups = batch.split_by_slot();
        assert_eq!(groups.len(), 2, "two slots");
        assert_eq!(groups[0].1, vec![0, 2]);
        assert_eq!(groups[1].1, vec![1, 3]);
        let answers = groups
            .into_iter()
            .map(|(_, positions)| {
                let values = positions
                    .iter()
                    .map(|i| Value::Int(*i as i64))
                    .collect::<Vec<_>>();
                (positions, values)
            })
            .collect();
        let Value::Array(kept) = batch.reassemble(answers).unwrap() else {
            panic!("an array");
        };
        assert_eq!(kept, vec![Value::Int(0), Value::Int(2), Value::Int(3)]);
    }

    #[test]
    fn scripts_are_grouped_by_their_first_key() {
        let mut batch = Batch::new();
        batch
            .cmd("EVAL")
            .arg("return 1")
            .arg(1)
            .arg("{u}k")
            .arg("x");
        batch.cmd("HGETALL").arg("p:{u}:other");
        batch.cmd("EVAL").arg("return 1").arg(0);
        let groups = batch.split_by_slot();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, vec![0, 1]);
        assert_eq!(groups[1].1, vec![2]);
    }

    #[test]
    fn a_server_error_in_any_part_fails_the_batch() {
        let mut batch = Batch::new();
        batch.cmd("GET").arg("{a}x").ignore();
        batch.cmd("GET").arg("{b}y");
        let groups = batch.split_by_slot();
        let error = redis::parse_redis_value(b"-ERR broken\r\n").unwrap();
        assert!(matches!(error, Value::ServerError(_)));
        let answers = vec![
            (groups[0].1.clone(), vec![error]),
            (groups[1].1.clone(), vec![Value::Nil]),
        ];
        assert!(batch.reassemble(answers).is_err());
    }
}
