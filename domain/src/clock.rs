//! The time Keyframe writes: now, to the microsecond.
//!
//! Postgres keeps times to the microsecond and SQLite keeps whatever it is given: times taken
//! at this precision read back the same from either database, and from an event's payload as
//! from the read model it fed.

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};

/// Now, in UTC, to the microsecond.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike as _;

    #[test]
    fn now_has_no_part_finer_than_a_microsecond() {
        assert_eq!(now().nanosecond() % 1_000, 0);
    }
}
