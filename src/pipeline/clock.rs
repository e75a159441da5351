//! The time the pipeline reads: the wall clock in production, a clock a test or the
//! simulation moves otherwise, so run timestamps, leases, deadlines and scheduled polls all
//! follow the same time as the planning that reads them back.

use time::OffsetDateTime;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// UTC now.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
