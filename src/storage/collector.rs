//! The garbage collector of uploads (docs/PROTOCOL.md, "Files"): every
//! interval, the rows of uploads that no message carries and that nobody
//! made or sent within the grace period are deleted (persistence decides
//! which, in one statement), then their bytes. Deleting a message never
//! deletes a file by itself; this is the only place bytes are removed.
//!
//! Every node of a cluster may run it: the DELETE hands each row to one
//! of them.

use std::time::Duration;

use actix::Addr;

use super::{Blob, Storage};
use crate::persistence::{self, CollectUploads, Persistence};

/// Rows taken per statement; a backlog is worked off a batch at a time.
const BATCH: i64 = 500;

/// Runs until the system stops.
pub async fn run(
    persistence: Addr<Persistence>,
    storage: Storage,
    every: Duration,
    idle_for: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        loop {
            let request = CollectUploads {
                idle_for,
                batch: BATCH,
            };
            let collected = match persistence::ask(&persistence, request).await {
                Ok(collected) => collected,
                Err(e) => {
                    log::warn!("collecting uploads: {e}");
                    break;
                }
            };
            for id in &collected {
                for blob in [Blob::File(id.0), Blob::Thumbnail(id.0)] {
                    if let Err(e) = storage.delete(blob).await {
                        // The row is gone: these bytes are now unreachable
                        // garbage of the other kind (bytes without a row).
                        log::warn!(upload_id:% = id; "deleting a collected upload's bytes: {e}");
                    }
                }
            }
            if !collected.is_empty() {
                log::info!("collected {} unused uploads", collected.len());
            }
            if (collected.len() as i64) < BATCH {
                break;
            }
        }
    }
}
