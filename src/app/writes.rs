//! Every campaign and audience change, in one place: the API's handlers
//! and the portal's forms call these, so a change is validated, written
//! (through the store's lease and fence) and audited the same way whoever
//! asks. Each runs [`detached`]: a client that goes away cannot cut a write
//! off before its audit record.

use chrono::Utc;

use super::slots::UploadSlot;
use super::{Actor, ApiError, AppState, detached};
use crate::domain::{AudienceChange, Campaign, CampaignPatch, NewCampaign, fmt_time};
use crate::ids::Audience;
use crate::numfmt::thousands;
use crate::preview::ChangeKind;
use crate::store::AuditEvent;

/// Validates and creates a campaign, then records it in the audit log.
pub async fn create_campaign(
    state: &AppState,
    actor: Option<Actor>,
    body: NewCampaign,
) -> Result<Campaign, ApiError> {
    let campaign = body.validate(Utc::now())?;
    let state = state.clone();
    detached(async move {
        let created = state.store.create_campaign(campaign).await?;
        // Integer IDs are the default and go unsaid, as before the type existed.
        let ids = match created.user_id_type {
            crate::ids::IdType::Integer => String::new(),
            other => format!("{other} IDs, "),
        };
        let summary = format!(
            "created {:?} ({} design, {ids}{} → {})",
            created.name,
            created.design.as_str(),
            fmt_time(created.starts_at),
            fmt_time(created.ends_at)
        );
        let event = AuditEvent::new("", &created.id, "created", summary);
        record(&state, actor.as_ref(), event).await;
        Ok(created)
    })
    .await
}

/// Applies `patch` to campaign `id`, then records what changed.
pub async fn update_campaign(
    state: &AppState,
    actor: Option<Actor>,
    id: &str,
    patch: CampaignPatch,
) -> Result<Campaign, ApiError> {
    let (state, id) = (state.clone(), id.to_string());
    detached(async move {
        let campaign = state.store.update_campaign(&id, &patch).await?;
        let mut changes = Vec::new();
        if patch.name.is_some() {
            changes.push(format!("renamed to {:?}", campaign.name));
        }
        if patch.starts_at.is_some() || patch.ends_at.is_some() {
            changes.push(format!(
                "window changed to {} → {}",
                fmt_time(campaign.starts_at),
                fmt_time(campaign.ends_at)
            ));
        }
        let summary = if changes.is_empty() {
            "updated (no change)".into()
        } else {
            changes.join("; ")
        };
        let event = AuditEvent::new("", &id, "updated", summary);
        record(&state, actor.as_ref(), event).await;
        Ok(campaign)
    })
    .await
}

/// Deletes campaign `id` and its audience, then records it.
pub async fn delete_campaign(
    state: &AppState,
    actor: Option<Actor>,
    id: &str,
) -> Result<(), ApiError> {
    let (state, id) = (state.clone(), id.to_string());
    detached(async move {
        state.store.delete_campaign(&id).await?;
        let event = AuditEvent::new("", &id, "deleted", "deleted");
        record(&state, actor.as_ref(), event).await;
        Ok(())
    })
    .await
}

/// Publishes a parsed upload (replace, add or remove) as a new version,
/// then records it. `slot` is the upload's, held until the write is done.
pub async fn publish_change(
    state: &AppState,
    actor: Option<Actor>,
    id: &str,
    kind: ChangeKind,
    members: Audience,
    slot: UploadSlot,
) -> Result<AudienceChange, ApiError> {
    let (state, id) = (state.clone(), id.to_string());
    detached(async move {
        let _slot = slot;
        let store = &state.store;
        let by = actor_name(actor.as_ref());
        let (change, action) = match kind {
            ChangeKind::Replace => (
                store.replace_audience(&id, members, by).await?,
                "audience_replaced",
            ),
            ChangeKind::Add => (store.add_members(&id, members, by).await?, "audience_added"),
            ChangeKind::Remove => (
                store.remove_members(&id, members, by).await?,
                "audience_removed",
            ),
        };
        let summary = summary(kind, &change);
        let event = AuditEvent::new("", &id, action, summary).at_version(change.version);
        record(&state, actor.as_ref(), event).await;
        Ok(change)
    })
    .await
}

/// The audit log's sentence for a change, with the size before and after,
/// so a mistaken replace ("replaced 3,000,000 IDs with 10") stands out.
fn summary(kind: ChangeKind, c: &AudienceChange) -> String {
    let (before, after) = (thousands(c.previous_size), thousands(c.audience_size));
    let version = c.version;
    match kind {
        ChangeKind::Replace => format!("replaced {before} IDs with {after} at version {version}"),
        ChangeKind::Add => format!(
            "added {} IDs: {before} -> {after} at version {version}",
            thousands(c.changed)
        ),
        ChangeKind::Remove => format!(
            "removed {} IDs: {before} -> {after} at version {version}",
            thousands(c.changed)
        ),
    }
}

/// Rolls campaign `id`'s audience back to kept version `version`, then
/// records it; shared with the portal's rollback form.
pub async fn rollback_audience(
    state: &AppState,
    actor: Option<Actor>,
    id: &str,
    version: u64,
    expected_live: Option<u64>,
) -> Result<AudienceChange, ApiError> {
    let slot = state.uploads.take()?;
    let (state, id) = (state.clone(), id.to_string());
    detached(async move {
        let _slot = slot;
        let by = actor_name(actor.as_ref());
        let change = state
            .store
            .rollback(&id, version, expected_live, by)
            .await?;
        let summary = format!(
            "rolled back to version {version}: {} IDs -> {} at version {}",
            thousands(change.previous_size),
            thousands(change.audience_size),
            change.version
        );
        let event =
            AuditEvent::new("", &id, "audience_rolled_back", summary).at_version(change.version);
        record(&state, actor.as_ref(), event).await;
        Ok(change)
    })
    .await
}

/// The name a change is recorded under (the audit log, the history).
pub fn actor_name(actor: Option<&Actor>) -> &str {
    actor.map_or("unknown", |a| a.0.as_str())
}

/// Records a change that has already happened. Failing to record it must not
/// turn a successful write into an error, so it is logged loudly instead.
pub async fn record(state: &AppState, actor: Option<&Actor>, event: AuditEvent) {
    let event = AuditEvent {
        actor: actor_name(actor).to_string(),
        ..event
    };
    tracing::info!(
        actor = %event.actor,
        campaign = %event.campaign,
        action = %event.action,
        summary = %event.summary,
        "change"
    );
    if let Err(e) = state.store.record(&event).await {
        tracing::error!(error = %e, campaign = %event.campaign, action = %event.action, "could not write the audit log");
    }
}
