//! The embedded store: one process, no setup, durable.
//!
//! Every audience lives in memory in its compact [`Audience`] form (integer
//! IDs as a `RoaringTreemap`, a few bytes per ID and ~10 ns lookups; UUIDs
//! as sorted 128-bit values; strings in one sorted byte arena) and on disk in a redb database, which commits with fsync and
//! is crash-safe: an interrupted write leaves the previous committed state.
//! Writes go to disk first and become visible in memory only once committed,
//! so what a check sees has always been persisted.
//!
//! The history (the last `--keep-versions` audiences, for rollback) lives
//! on disk only; memory holds each version's one-line record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::history::{self, AudienceVersion, Origin, VersionAction};
use super::{AuditEvent, Store, StoreError, StoreResult, check_id_type};
use crate::domain::{AudienceChange, Campaign, CampaignPatch};
use crate::ids::{Audience, User};

/// Campaign id → campaign metadata as JSON.
const CAMPAIGNS: TableDefinition<&str, &str> = TableDefinition::new("campaigns");
/// Campaign id → audience in [`Audience::to_bytes`]'s form for its ID type.
const AUDIENCES: TableDefinition<&str, &[u8]> = TableDefinition::new("audiences");
/// (campaign id, version) → that version's record as JSON, for each kept version.
const VERSIONS: TableDefinition<(&str, u64), &str> = TableDefinition::new("versions");
/// (campaign id, version) → that version's audience, as in `AUDIENCES`.
const VERSION_AUDIENCES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("version_audiences");

/// The file inside the data directory.
pub const DB_FILE: &str = "guestlist.redb";
/// The audit log inside the data directory: one JSON event per line.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// A cheap handle; clones share one database and one in-memory view.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    /// A std `RwLock` is right here: it is held only to clone or swap an `Arc`,
    /// never across an `.await` or a disk write, so checks never wait on I/O.
    live: RwLock<HashMap<String, Arc<Entry>>>,
    /// Serialises writers so each read-modify-write of an entry sees the last
    /// committed one. Writes are admin-rate; checks never take this lock.
    writer: tokio::sync::Mutex<()>,
    /// Appends to the audit file are serialised here; each is flushed and
    /// synced before the request answers.
    audit: std::sync::Mutex<std::fs::File>,
    audit_path: PathBuf,
    /// Audience versions kept per campaign, the live one included.
    keep_versions: usize,
}

struct Entry {
    campaign: Campaign,
    members: Arc<Audience>,
    /// The kept versions' records, newest first.
    versions: Arc<Vec<AudienceVersion>>,
}

impl Entry {
    /// Whether the audience holds `user`, read as the campaign's ID type.
    fn holds(&self, user: &User) -> bool {
        user.key(self.campaign.user_id_type)
            .is_some_and(|key| self.members.contains(&key))
    }
}

/// What a commit writes besides the campaign's metadata.
enum Commit {
    /// Metadata only (a PATCH).
    Metadata,
    /// A new campaign: its empty audience too.
    Created,
    /// A new audience version: the live audience, its record and copy in
    /// the history, and the removal of the versions that fell off.
    Audience { dropped: Vec<u64> },
    /// The campaign, its audience and its whole history.
    Deleted,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` and loads every audience into
    /// memory, keeping the default number of versions.
    pub async fn open(dir: &Path) -> anyhow::Result<EmbeddedStore> {
        Self::open_keeping(dir, history::DEFAULT_KEEP_VERSIONS).await
    }

    /// [`EmbeddedStore::open`], keeping `keep_versions` audience versions
    /// per campaign (at least 1).
    pub async fn open_keeping(dir: &Path, keep_versions: usize) -> anyhow::Result<EmbeddedStore> {
        let dir = dir.to_path_buf();
        let keep_versions = keep_versions.max(1);
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir, keep_versions)).await?
    }

    fn open_blocking(dir: &Path, keep_versions: usize) -> anyhow::Result<EmbeddedStore> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).with_context(|| {
            format!(
                "opening {} (is another guestlist process using it?)",
                path.display()
            )
        })?;
        // Make sure both tables exist so readers never meet a missing table.
        let tx = db.begin_write()?;
        tx.open_table(CAMPAIGNS)?;
        tx.open_table(AUDIENCES)?;
        tx.open_table(VERSIONS)?;
        tx.open_table(VERSION_AUDIENCES)?;
        tx.commit()?;
        tidy_history(&db, keep_versions)
            .with_context(|| format!("tidying the audience history in {}", path.display()))?;

        let mut live = HashMap::new();
        let tx = db.begin_read()?;
        let campaigns = tx.open_table(CAMPAIGNS)?;
        let audiences = tx.open_table(AUDIENCES)?;
        let versions = tx.open_table(VERSIONS)?;
        for row in campaigns.iter()? {
            let (id, json) = row?;
            let campaign: Campaign = serde_json::from_str(json.value())
                .with_context(|| format!("campaign {:?} in {}", id.value(), path.display()))?;
            let members = match audiences.get(id.value())? {
                Some(bytes) => Audience::from_bytes(campaign.user_id_type, bytes.value())
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("audience of {:?}", id.value()))?,
                None => Audience::empty(campaign.user_id_type),
            };
            let mut kept = Vec::new();
            for row in versions.range((id.value(), 0)..=(id.value(), u64::MAX))? {
                let (key, json) = row?;
                let record: AudienceVersion = serde_json::from_str(json.value())
                    .with_context(|| format!("version {:?} in {}", key.value(), path.display()))?;
                // Only what this campaign has published so far: rows past
                // its live version belong to no audience it holds.
                if record.version <= campaign.version {
                    kept.push(record);
                }
            }
            kept.reverse();
            live.insert(
                campaign.id.clone(),
                Arc::new(Entry {
                    campaign,
                    members: Arc::new(members),
                    versions: Arc::new(kept),
                }),
            );
        }
        drop((campaigns, audiences, versions));
        drop(tx);
        tracing::info!(path = %path.display(), campaigns = live.len(), "embedded store opened");
        let audit_path = dir.join(AUDIT_FILE);
        let mut audit = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&audit_path)
            .with_context(|| format!("opening the audit log {}", audit_path.display()))?;
        end_with_newline(&mut audit)
            .with_context(|| format!("repairing the audit log {}", audit_path.display()))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                audit: std::sync::Mutex::new(audit),
                audit_path,
                path,
                live: RwLock::new(live),
                writer: tokio::sync::Mutex::new(()),
                keep_versions,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn entry(&self, id: &str) -> StoreResult<Arc<Entry>> {
        self.inner
            .live
            .read()
            .expect("embedded store lock poisoned")
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn entries(&self) -> Vec<Arc<Entry>> {
        self.inner
            .live
            .read()
            .expect("embedded store lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Persists `entry` (or deletes `id` when `None`), then publishes it in memory.
    /// Serialisation and the fsync run on a blocking thread.
    async fn commit(&self, id: &str, entry: Option<Entry>, what: Commit) -> StoreResult<()> {
        let inner = self.inner.clone();
        let id_owned = id.to_string();
        let entry = tokio::task::spawn_blocking(move || -> StoreResult<Option<Entry>> {
            let tx = inner.db.begin_write().map_err(unavailable)?;
            {
                let mut campaigns = tx.open_table(CAMPAIGNS).map_err(unavailable)?;
                let mut audiences = tx.open_table(AUDIENCES).map_err(unavailable)?;
                let mut versions = tx.open_table(VERSIONS).map_err(unavailable)?;
                let mut copies = tx.open_table(VERSION_AUDIENCES).map_err(unavailable)?;
                let id = id_owned.as_str();
                if let Some(e) = &entry {
                    let json = serde_json::to_string(&e.campaign)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    campaigns.insert(id, json.as_str()).map_err(unavailable)?;
                }
                match (&what, &entry) {
                    (Commit::Metadata, _) => {}
                    (Commit::Created | Commit::Audience { .. }, Some(e)) => {
                        let bytes = e.members.to_bytes();
                        audiences
                            .insert(id, bytes.as_slice())
                            .map_err(unavailable)?;
                        if let (Commit::Audience { dropped }, Some(newest)) =
                            (&what, e.versions.first())
                        {
                            let record = serde_json::to_string(newest)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                            let key = (id, newest.version);
                            versions.insert(key, record.as_str()).map_err(unavailable)?;
                            copies.insert(key, bytes.as_slice()).map_err(unavailable)?;
                            for &version in dropped {
                                versions.remove((id, version)).map_err(unavailable)?;
                                copies.remove((id, version)).map_err(unavailable)?;
                            }
                        }
                    }
                    _ => {
                        campaigns.remove(id).map_err(unavailable)?;
                        audiences.remove(id).map_err(unavailable)?;
                        versions
                            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                            .map_err(unavailable)?;
                        copies
                            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                            .map_err(unavailable)?;
                    }
                }
            }
            tx.commit().map_err(unavailable)?;
            Ok(entry)
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))??;

        let mut live = self
            .inner
            .live
            .write()
            .expect("embedded store lock poisoned");
        match entry {
            Some(e) => live.insert(id.to_string(), Arc::new(e)),
            None => live.remove(id),
        };
        Ok(())
    }

    /// Applies `change` to the audience. Incremental changes that change
    /// nothing keep the version, as in the Redis store; a replace always bumps it.
    async fn change_audience(
        &self,
        id: &str,
        origin: Origin,
        change: impl FnOnce(&Entry, &Inner) -> StoreResult<(Audience, u64)> + Send + 'static,
    ) -> StoreResult<AudienceChange> {
        let incremental = matches!(origin.action, VersionAction::Added | VersionAction::Removed);
        let _writer = self.inner.writer.lock().await;
        let current = self.entry(id)?;
        let (entry, inner) = (current.clone(), self.inner.clone());
        // Set algebra on millions of IDs is CPU work, and a rollback reads
        // its version from disk: keep both off the async workers.
        let (members, changed) = tokio::task::spawn_blocking(move || change(&entry, &inner))
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))??;
        if incremental && changed == 0 {
            return Ok(AudienceChange {
                previous_size: current.campaign.audience_size,
                audience_size: current.campaign.audience_size,
                version: current.campaign.version,
                changed,
            });
        }
        let mut campaign = current.campaign.clone();
        campaign.audience_size = members.len();
        campaign.version += 1;
        campaign.updated_at = Utc::now();
        let result = AudienceChange {
            previous_size: current.campaign.audience_size,
            audience_size: campaign.audience_size,
            version: campaign.version,
            changed,
        };
        let record = origin.record(
            campaign.version,
            campaign.audience_size,
            campaign.updated_at,
        );
        let (kept, dropped) = history::retain(
            current.versions.to_vec(),
            record,
            self.inner.keep_versions,
            |v| v.version,
        );
        let entry = Entry {
            campaign,
            members: Arc::new(members),
            versions: Arc::new(kept),
        };
        let dropped = dropped.iter().map(|v| v.version).collect();
        self.commit(id, Some(entry), Commit::Audience { dropped })
            .await?;
        Ok(result)
    }
}

/// Brings the history in line with the campaigns at open: a live version
/// that predates the history gets a record and a copy (as `unrecorded`), so
/// it can be rolled back to like any other; rows past a campaign's live
/// version, or past the newest `keep_versions` (after `--keep-versions` was
/// lowered), are removed. A store already in line changes nothing.
fn tidy_history(db: &Database, keep_versions: usize) -> anyhow::Result<()> {
    let tx = db.begin_write()?;
    {
        let campaigns = tx.open_table(CAMPAIGNS)?;
        let audiences = tx.open_table(AUDIENCES)?;
        let mut versions = tx.open_table(VERSIONS)?;
        let mut copies = tx.open_table(VERSION_AUDIENCES)?;
        for row in campaigns.iter()? {
            let (id, json) = row?;
            let campaign: Campaign = serde_json::from_str(json.value())?;
            let id = id.value();
            let live = campaign.version;
            if live > 0 && versions.get((id, live))?.is_none() {
                let origin = Origin::new("unknown", VersionAction::Unrecorded);
                let record = origin.record(live, campaign.audience_size, campaign.updated_at);
                let bytes = audiences
                    .get(id)?
                    .map(|b| b.value().to_vec())
                    .unwrap_or_default();
                versions.insert((id, live), serde_json::to_string(&record)?.as_str())?;
                copies.insert((id, live), bytes.as_slice())?;
            }
            let mut held: Vec<u64> = Vec::new();
            for row in versions.range((id, 0)..=(id, u64::MAX))? {
                held.push(row?.0.value().1);
            }
            held.sort_unstable_by(|a, b| b.cmp(a));
            let newest_kept: Vec<u64> = held
                .iter()
                .copied()
                .filter(|&v| v <= live)
                .take(keep_versions)
                .collect();
            for version in held.into_iter().filter(|v| !newest_kept.contains(v)) {
                versions.remove((id, version))?;
                copies.remove((id, version))?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// The audience of kept version `version`, read from the history.
fn kept_audience(inner: &Inner, entry: &Entry, version: u64) -> StoreResult<Audience> {
    let id = entry.campaign.id.as_str();
    let not_kept = || StoreError::VersionNotKept {
        campaign: id.to_string(),
        version,
        kept: entry.versions.iter().map(|v| v.version).collect(),
    };
    if !entry.versions.iter().any(|v| v.version == version) {
        return Err(not_kept());
    }
    let tx = inner.db.begin_read().map_err(unavailable)?;
    let copies = tx.open_table(VERSION_AUDIENCES).map_err(unavailable)?;
    let bytes = copies
        .get((id, version))
        .map_err(unavailable)?
        .ok_or_else(not_kept)?;
    Audience::from_bytes(entry.campaign.user_id_type, bytes.value())
        .map_err(|e| StoreError::Corrupt(format!("version {version} of {id:?}: {e}")))
}

/// A crash mid-append can leave a last line without its newline; terminate
/// it so the next event starts on a line of its own (the torn one is skipped
/// when read).
fn end_with_newline(file: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::End(-1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
        file.sync_data()?;
    }
    Ok(())
}

fn unavailable(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(Box::new(e.into()))
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn create_campaign(&self, campaign: Campaign) -> StoreResult<Campaign> {
        let _writer = self.inner.writer.lock().await;
        if self.entry(&campaign.id).is_ok() {
            return Err(StoreError::AlreadyExists(campaign.id));
        }
        let entry = Entry {
            campaign: campaign.clone(),
            members: Arc::new(Audience::empty(campaign.user_id_type)),
            versions: Arc::new(Vec::new()),
        };
        self.commit(&campaign.id, Some(entry), Commit::Created)
            .await?;
        Ok(campaign)
    }

    async fn list_campaigns(&self) -> StoreResult<Vec<Campaign>> {
        let mut all: Vec<Campaign> = self.entries().iter().map(|e| e.campaign.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn get_campaign(&self, id: &str) -> StoreResult<Campaign> {
        Ok(self.entry(id)?.campaign.clone())
    }

    async fn update_campaign(&self, id: &str, patch: &CampaignPatch) -> StoreResult<Campaign> {
        let _writer = self.inner.writer.lock().await;
        let current = self.entry(id)?;
        let campaign = patch.apply(&current.campaign, Utc::now())?;
        let entry = Entry {
            campaign: campaign.clone(),
            members: current.members.clone(),
            versions: current.versions.clone(),
        };
        self.commit(id, Some(entry), Commit::Metadata).await?;
        Ok(campaign)
    }

    async fn delete_campaign(&self, id: &str) -> StoreResult<()> {
        let _writer = self.inner.writer.lock().await;
        self.entry(id)?;
        self.commit(id, None, Commit::Deleted).await
    }

    async fn replace_audience(
        &self,
        id: &str,
        members: Audience,
        by: &str,
    ) -> StoreResult<AudienceChange> {
        let received = members.len();
        let origin = Origin::new(by, VersionAction::Replaced);
        self.change_audience(id, origin, move |current, _| {
            check_id_type(&current.campaign, &members)?;
            Ok((members, received))
        })
        .await
    }

    async fn add_members(
        &self,
        id: &str,
        members: Audience,
        by: &str,
    ) -> StoreResult<AudienceChange> {
        let origin = Origin::new(by, VersionAction::Added);
        self.change_audience(id, origin, move |current, _| {
            check_id_type(&current.campaign, &members)?;
            let old = &*current.members;
            let next = old.union(&members);
            let added = next.len() - old.len();
            Ok((next, added))
        })
        .await
    }

    async fn remove_members(
        &self,
        id: &str,
        members: Audience,
        by: &str,
    ) -> StoreResult<AudienceChange> {
        let origin = Origin::new(by, VersionAction::Removed);
        self.change_audience(id, origin, move |current, _| {
            check_id_type(&current.campaign, &members)?;
            let old = &*current.members;
            let next = old.difference(&members);
            let removed = old.len() - next.len();
            Ok((next, removed))
        })
        .await
    }

    async fn versions(&self, id: &str) -> StoreResult<Vec<AudienceVersion>> {
        Ok(self.entry(id)?.versions.to_vec())
    }

    async fn rollback(
        &self,
        id: &str,
        version: u64,
        expected_live: Option<u64>,
        by: &str,
    ) -> StoreResult<AudienceChange> {
        let mut origin = Origin::new(by, VersionAction::RolledBack);
        origin.restored = Some(version);
        self.change_audience(id, origin, move |current, inner| {
            // Under the writer lock: nothing can publish in between.
            history::check_live(
                &current.campaign.id,
                current.campaign.version,
                expected_live,
            )?;
            let members = kept_audience(inner, current, version)?;
            let size = members.len();
            Ok((members, size))
        })
        .await
    }

    async fn audience(&self, id: &str) -> StoreResult<Arc<Audience>> {
        Ok(self.entry(id)?.members.clone())
    }

    async fn is_member(&self, id: &str, user: &User) -> StoreResult<(Campaign, bool)> {
        let entry = self.entry(id)?;
        let member = entry.holds(user);
        Ok((entry.campaign.clone(), member))
    }

    async fn are_members(&self, id: &str, users: &[User]) -> StoreResult<(Campaign, Vec<bool>)> {
        let entry = self.entry(id)?;
        let answers = users.iter().map(|u| entry.holds(u)).collect();
        Ok((entry.campaign.clone(), answers))
    }

    async fn campaigns_for_many(
        &self,
        users: &[User],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Vec<String>>> {
        let mut active: Vec<Arc<Entry>> = self
            .entries()
            .into_iter()
            .filter(|e| e.campaign.is_active_at(now))
            .collect();
        active.sort_by(|a, b| a.campaign.id.cmp(&b.campaign.id));
        Ok(users
            .iter()
            .map(|u| {
                active
                    .iter()
                    .filter(|e| e.holds(u))
                    .map(|e| e.campaign.id.clone())
                    .collect()
            })
            .collect())
    }

    async fn ready(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn record(&self, event: &AuditEvent) -> StoreResult<()> {
        let mut line =
            serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        line.push('\n');
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut file = inner.audit.lock().expect("audit lock poisoned");
            file.write_all(line.as_bytes())?;
            file.sync_data()
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
        .map_err(|e| StoreError::Unavailable(Box::new(e)))
    }

    async fn audit(&self, campaign: Option<&str>, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        let path = self.inner.audit_path.clone();
        let campaign = campaign.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let file = std::fs::File::open(&path)?;
            // Keep only the newest `limit` matches: memory follows the
            // answer, not the size of the log.
            let mut newest = std::collections::VecDeque::with_capacity(limit);
            for line in std::io::BufReader::new(file).lines() {
                let line = line?;
                let Ok(event) = serde_json::from_str::<AuditEvent>(&line) else {
                    // A torn last line from a crash mid-append is skipped.
                    continue;
                };
                if campaign.as_deref().is_some_and(|c| c != event.campaign) {
                    continue;
                }
                if newest.len() == limit {
                    newest.pop_front();
                }
                newest.push_back(event);
            }
            Ok::<_, std::io::Error>(newest.into_iter().rev().collect())
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
        .map_err(|e| StoreError::Unavailable(Box::new(e)))
    }
}
