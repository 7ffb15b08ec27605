//! What jobs cost, in credits. The rates come from configuration; the price of a job is fixed
//! when it is requested (and reserved then), so a later change of rates never changes what a
//! running job costs.

use crate::job::JobType;

/// The rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pricing {
    /// An analysis: credits per started minute of video.
    pub analyze_per_minute: i64,
    /// Cutting clips: a flat price per job.
    pub clip: i64,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            analyze_per_minute: 1,
            clip: 2,
        }
    }
}

impl Pricing {
    /// The price of a `job_type` job on a video of `duration_ms`. An analysis is charged per
    /// started minute, at least one: a video whose length the probe could not tell counts as
    /// one minute.
    pub fn price(&self, job_type: JobType, duration_ms: Option<u64>) -> i64 {
        match job_type {
            JobType::Analyze => {
                let minutes = duration_ms.unwrap_or(0).div_ceil(60_000).max(1);
                self.analyze_per_minute
                    .saturating_mul(i64::try_from(minutes).unwrap_or(i64::MAX))
            }
            JobType::Clip => self.clip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICING: Pricing = Pricing {
        analyze_per_minute: 3,
        clip: 5,
    };

    #[test]
    fn an_analysis_costs_per_started_minute() {
        assert_eq!(PRICING.price(JobType::Analyze, Some(60_000)), 3);
        assert_eq!(PRICING.price(JobType::Analyze, Some(60_001)), 6);
        assert_eq!(PRICING.price(JobType::Analyze, Some(10 * 60_000 - 1)), 30);
    }

    #[test]
    fn a_short_or_unmeasured_video_costs_one_minute() {
        assert_eq!(PRICING.price(JobType::Analyze, Some(1)), 3);
        assert_eq!(PRICING.price(JobType::Analyze, Some(0)), 3);
        assert_eq!(PRICING.price(JobType::Analyze, None), 3);
    }

    #[test]
    fn clips_cost_a_flat_price_whatever_the_length() {
        assert_eq!(PRICING.price(JobType::Clip, Some(3 * 3_600_000)), 5);
        assert_eq!(PRICING.price(JobType::Clip, None), 5);
    }

    #[test]
    fn the_longest_video_does_not_overflow() {
        let twelve_hours = crate::media::VideoFacts::MAX_DURATION_MS;
        assert_eq!(PRICING.price(JobType::Analyze, Some(twelve_hours)), 3 * 720);
    }
}
