//! How group commit forms its batches (see [`super::group_commit`]).

use std::time::Duration;

/// How batches are formed and how many may commit at once.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub max: usize,
    pub window: Duration,
    pub in_flight: usize,
    /// The request deadline, counted from the oldest send of a batch.
    pub request_timeout: Duration,
}

impl BatchSettings {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            max: settings.persistence.batch_max,
            window: settings.persistence.batch_window(),
            // At least a quarter of the pool stays free for reads,
            // cursors and membership changes while sends are at full tilt.
            in_flight: settings
                .persistence
                .commits_in_flight
                .min(settings.db_pool_size * 3 / 4)
                .max(1),
            request_timeout: settings.db_request_timeout(),
        }
    }
}
