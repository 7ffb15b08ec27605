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
    /// started minute, at least one; `None` when the video's length is unknown (a container
    /// without a duration): it cannot be priced, and pricing it as short would make any length
    /// cheap.
    pub fn price(&self, job_type: JobType, duration_ms: Option<u64>) -> Option<i64> {
        match job_type {
            JobType::Analyze => {
                let minutes = duration_ms?.div_ceil(60_000).max(1);
                Some(
                    self.analyze_per_minute
                        .saturating_mul(i64::try_from(minutes).unwrap_or(i64::MAX)),
                )
            }
            JobType::Clip => Some(self.clip),
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
        assert_eq!(PRICING.price(JobType::Analyze, Some(60_000)), Some(3));
        assert_eq!(PRICING.price(JobType::Analyze, Some(60_001)), Some(6));
        assert_eq!(PRICING.price(JobType::Analyze, Some(10 * 60_000 - 1)), Some(30));
    }

    #[test]
    fn a_short_video_costs_one_minute() {
        assert_eq!(PRICING.price(JobType::Analyze, Some(1)), Some(3));
        assert_eq!(PRICING.price(JobType::Analyze, Some(0)), Some(3));
    }

    #[test]
    fn an_analysis_of_a_video_of_unknown_length_has_no_price() {
        assert_eq!(PRICING.price(JobType::Analyze, None), None);
    }

    #[test]
    fn clips_cost_a_flat_price_whatever_the_length() {
        assert_eq!(PRICING.price(JobType::Clip, Some(3 * 3_600_000)), Some(5));
        assert_eq!(PRICING.price(JobType::Clip, None), Some(5));
    }

    #[test]
    fn the_longest_video_does_not_overflow() {
        let twelve_hours = crate::media::VideoFacts::MAX_DURATION_MS;
        assert_eq!(PRICING.price(JobType::Analyze, Some(twelve_hours)), Some(3 * 720));
    }
}
