//! Memory of an audience of each ID type as the embedded store holds it:
//! `cargo run --example id_memory -- 10000000`.
//!
//! For each type it builds the audience through the upload parser (the
//! path a real upload takes), then prints the audience's heap bytes per
//! ID and how much the process's resident memory grew while it was held.
//! Strings are random, 16 to 24 bytes (about 20); UUIDs are random
//! version-4 values in canonical form.

use std::io::Read;

use guestlist::ingest::{Format, parse_reader_typed};
use guestlist::{Audience, IdType};

/// Resident memory in bytes, from `/proc/self/statm`.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A body of `n` lines, generated as it is read, so the body never sits
/// in memory beside the audience.
struct Body {
    left: u64,
    state: u64,
    id_type: IdType,
    line: Vec<u8>,
    at: usize,
}

impl Body {
    fn next_random(&mut self) -> u64 {
        // xorshift64*: fast, and plenty for test data.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill_line(&mut self) {
        self.line.clear();
        self.at = 0;
        match self.id_type {
            IdType::String => {
                let len = 16 + (self.next_random() % 9) as usize;
                const ALPHABET: &[u8] =
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._+-";
                for _ in 0..len {
                    let r = self.next_random();
                    self.line
                        .push(ALPHABET[(r % ALPHABET.len() as u64) as usize]);
                }
            }
            IdType::Uuid => {
                let value = (u128::from(self.next_random()) << 64) | u128::from(self.next_random());
                let uuid = uuid::Builder::from_random_bytes(value.to_be_bytes()).into_uuid();
                self.line
                    .extend_from_slice(uuid.hyphenated().to_string().as_bytes());
            }
            IdType::Integer => {
                let id = self.next_random() >> 1;
                self.line.extend_from_slice(id.to_string().as_bytes());
            }
        }
        self.line.push(b'\n');
    }
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut written = 0;
        while written < out.len() {
            if self.at == self.line.len() {
                if self.left == 0 {
                    break;
                }
                self.left -= 1;
                self.fill_line();
            }
            let n = (self.line.len() - self.at).min(out.len() - written);
            out[written..written + n].copy_from_slice(&self.line[self.at..self.at + n]);
            self.at += n;
            written += n;
        }
        Ok(written)
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number of IDs"))
        .unwrap_or(1_000_000);
    println!("ids {n}");
    for id_type in [IdType::String, IdType::Uuid] {
        let before = rss();
        let body = Body {
            left: n,
            state: 0x9e37_79b9_7f4a_7c15 ^ n,
            id_type,
            line: Vec::new(),
            at: 0,
        };
        let parsed =
            parse_reader_typed(body, Format::Lines, u64::MAX, id_type).expect("the body parses");
        let audience: Audience = parsed.members;
        let held = rss().saturating_sub(before);
        let heap = audience.heap_bytes();
        let len = audience.len().max(1);
        println!(
            "{id_type}: {} distinct, heap {heap} bytes ({:.1} B/ID), RSS grew {held} bytes ({:.1} B/ID)",
            audience.len(),
            heap as f64 / len as f64,
            held as f64 / len as f64,
        );
        drop(audience);
    }
}
