//! A clock tests set to a simulated moment, from which it runs at the wall clock's pace, so
//! the pipeline's timestamps follow the simulated days the timers are fired on while polls,
//! leases and retries still see time pass.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use partner_billing_export::pipeline::clock::Clock;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<(OffsetDateTime, Instant)>>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new((at, Instant::now()))))
    }

    /// Moves the clock to `at` (it runs on from there).
    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (at, Instant::now());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let (at, since) = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        at + since.elapsed()
    }
}
