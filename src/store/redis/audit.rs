//! The audit log: one Redis stream, capped, read newest first in pages.

use super::RedisStore;
use super::keys;
use crate::store::{AuditEvent, StoreError, StoreResult};

impl RedisStore {
    pub(crate) async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        let json = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.inner
            .admin
            .cmd::<String>(
                "audit",
                redis::cmd("XADD")
                    .arg(self.keys().audit())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(keys::AUDIT_CAP)
                    .arg("*")
                    .arg("event")
                    .arg(json),
            )
            .await
            .map(drop)
    }

    pub(crate) async fn read_audit(
        &self,
        campaign: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AuditEvent>> {
        // Newest first, a page at a time; a campaign filter reads at most
        // a few pages so one query never walks the whole stream.
        const PAGE: usize = 1_000;
        const MAX_PAGES: usize = 20;
        let mut events = Vec::new();
        let mut end = "+".to_string();
        for _ in 0..MAX_PAGES {
            let page: redis::streams::StreamRangeReply = self
                .inner
                .admin
                .cmd(
                    "audit",
                    redis::cmd("XREVRANGE")
                        .arg(self.keys().audit())
                        .arg(&end)
                        .arg("-")
                        .arg("COUNT")
                        .arg(PAGE),
                )
                .await?;
            let count = page.ids.len();
            for entry in &page.ids {
                let Some(json) = entry.get::<String>("event") else {
                    continue;
                };
                let Ok(event) = serde_json::from_str::<AuditEvent>(&json) else {
                    continue;
                };
                if campaign.is_none_or(|c| c == event.campaign) {
                    events.push(event);
                    if events.len() == limit {
                        return Ok(events);
                    }
                }
            }
            match page.ids.last() {
                // Exclusive start for the next page (Redis 6.2+).
                Some(last) if count == PAGE => end = format!("({}", last.id),
                _ => break,
            }
        }
        Ok(events)
    }
}
