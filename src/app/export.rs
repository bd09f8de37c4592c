//! An audience as text, one ID per line in ascending order, streamed chunk
//! by chunk from the compact audience: the API's export and the portal's
//! one-click backup.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};

use super::slots::UploadSlot;
use super::{ApiError, AppState, checked_campaign_id};
use crate::domain::Campaign;
use crate::ids::Audience;

/// Bytes of text per streamed chunk.
const EXPORT_CHUNK: usize = 64 * 1024;

/// The export as a file to save: the same text, named after the campaign
/// and the version it is (`spring-sale-v4.txt`), read as one state so the
/// name never belongs to another version. The portal's one-click backup.
pub async fn download(state: &AppState, id: &str) -> Result<Response, ApiError> {
    let id = checked_campaign_id(id)?;
    let slot = state.exports.take_export()?;
    let (campaign, members) = consistent_audience(state, id).await?;
    // Campaign ids are letters, digits, `-` and `_`: nothing to escape.
    let disposition = format!(
        "attachment; filename=\"{}-v{}.txt\"",
        campaign.id, campaign.version
    );
    let mut response = text(members, slot).into_response();
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_str(&disposition)
            .map_err(|e| ApiError::Internal(format!("the file name cannot be a header: {e}")))?,
    );
    Ok(response)
}

/// The campaign and its audience, of one state: the campaign read on both
/// sides of the audience, again while a change (or a delete and re-create)
/// lands between them.
pub async fn consistent_audience(
    state: &AppState,
    id: &str,
) -> Result<(Campaign, Arc<Audience>), ApiError> {
    for _ in 0..3 {
        let before = state.store.get_campaign(id).await?;
        let members = state.store.audience(id).await?;
        let after = state.store.get_campaign(id).await?;
        let same = (before.version, before.created_at, before.design)
            == (after.version, after.created_at, after.design);
        if same {
            return Ok((after, members));
        }
    }
    Err(crate::store::StoreError::Busy(id.to_string()).into())
}

/// The export's text, streamed; the slot is held until the stream ends or
/// the client goes away.
pub fn text(members: Arc<Audience>, slot: UploadSlot) -> impl IntoResponse {
    let chunks = ExportChunks::new(members, slot);
    let body = Body::from_stream(stream::iter(chunks).map(Ok::<_, std::io::Error>));
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}

/// Iterates the text of an audience in chunks of about [`EXPORT_CHUNK`] bytes.
struct ExportChunks {
    members: Arc<Audience>,
    /// Where the next chunk starts; `None` when done.
    next: Option<Cursor>,
    _slot: UploadSlot,
}

/// A place in an audience that survives between chunks without holding a
/// borrow of it.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// The smallest integer member ≥ this (roaring seeks to it).
    Int(u64),
    /// The member at this index of a sorted UUID or string list.
    Index(usize),
}

impl ExportChunks {
    fn new(members: Arc<Audience>, slot: UploadSlot) -> Self {
        let next = match &*members {
            Audience::Integers(ids) => ids.min().map(Cursor::Int),
            other => (!other.is_empty()).then_some(Cursor::Index(0)),
        };
        ExportChunks {
            members,
            next,
            _slot: slot,
        }
    }
}

impl Iterator for ExportChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let start = self.next?;
        let mut text = String::with_capacity(EXPORT_CHUNK + 300);
        let mut resume = None;
        match (&*self.members, start) {
            (Audience::Integers(members), Cursor::Int(start)) => {
                let mut ids = members.iter();
                ids.advance_to(start);
                let mut digits = itoa::Buffer::new();
                for id in ids {
                    if text.len() >= EXPORT_CHUNK {
                        resume = Some(Cursor::Int(id));
                        break;
                    }
                    text.push_str(digits.format(id));
                    text.push('\n');
                }
            }
            (members, Cursor::Index(start)) => {
                for (i, id) in (start..).zip(members.texts_from(start)) {
                    if text.len() >= EXPORT_CHUNK {
                        resume = Some(Cursor::Index(i));
                        break;
                    }
                    text.push_str(&id);
                    text.push('\n');
                }
            }
            _ => {}
        }
        self.next = resume;
        Some(Bytes::from(text))
    }
}
