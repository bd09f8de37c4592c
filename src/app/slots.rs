//! Admission for uploads and exports: each holds an audience in memory,
//! so a fixed number may run at once and one more is refused, not queued.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// The default of `--max-concurrent-uploads`. Each upload parses on its own
/// blocking thread and may hold up to `--max-audience` ids in memory; two
/// keep that peak predictable without making a short upload wait behind a
/// long one.
pub const DEFAULT_UPLOAD_SLOTS: usize = 2;

/// The default of `--max-concurrent-exports`: a backup or two while another
/// is still streaming, each holding one audience in memory.
pub const DEFAULT_EXPORT_SLOTS: usize = 2;

/// What a refused upload is told to wait before retrying. Uploads take
/// seconds to minutes, so retrying sooner would mostly be refused again.
const UPLOAD_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Admission for uploads: one slot per upload being parsed or written. An
/// upload that finds none is refused at once (503 with `Retry-After`)
/// rather than queued: a queued upload would hold its connection and body
/// buffers while it waits, which is the cost the cap exists to bound.
#[derive(Clone)]
pub struct UploadSlots(Arc<Semaphore>);

impl UploadSlots {
    pub fn new(slots: usize) -> UploadSlots {
        UploadSlots(Arc::new(Semaphore::new(slots)))
    }

    pub fn take(&self) -> Result<UploadSlot, ApiError> {
        self.take_for(
            "guestlist_uploads_in_progress",
            "too_many_uploads",
            "every upload slot is in use (--max-concurrent-uploads); nothing was changed",
        )
    }

    /// An export holds a whole audience in memory while it streams (read
    /// back from Redis, a sparse one costs far more than its snapshot), so
    /// exports have slots of their own (`--max-concurrent-exports`); they
    /// do not share the uploads', so a long upload never blocks a backup.
    pub fn take_export(&self) -> Result<UploadSlot, ApiError> {
        self.take_for(
            "guestlist_exports_in_progress",
            "too_many_exports",
            "every export slot is in use (--max-concurrent-exports)",
        )
    }

    fn take_for(
        &self,
        gauge: &'static str,
        code: &'static str,
        why: &str,
    ) -> Result<UploadSlot, ApiError> {
        let permit = self.0.clone().try_acquire_owned().map_err(|_| {
            let retry_after = UPLOAD_RETRY_AFTER.as_secs();
            ApiError::Saturated {
                code,
                message: format!("{why}, retry in {retry_after} s"),
                retry_after,
            }
        })?;
        metrics::gauge!(gauge).increment(1.0);
        Ok(UploadSlot {
            _permit: permit,
            gauge,
        })
    }
}

/// A taken slot; dropping it frees the slot.
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    /// The gauge counting this kind of transfer.
    gauge: &'static str,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        metrics::gauge!(self.gauge).decrement(1.0);
    }
}
