//! The one clock of the core. Every expiry decision takes `now` from here, and tests move it.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

#[derive(Debug, Default)]
pub struct Clock {
    /// Seconds added to the system time; only tests change it.
    offset: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> OffsetDateTime {
        // The clock is the one place allowed to read the system time.
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset.load(Ordering::Relaxed))
    }

    pub fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Moves the clock forward (tests of expiry).
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

/// RFC 3339 with nanoseconds, as Vault prints times.
pub fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn rfc3339_unix(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map(rfc3339)
        .unwrap_or_default()
}
