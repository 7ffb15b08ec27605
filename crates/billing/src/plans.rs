//! Subscription plans, from configuration: each has a name, the credits a paid month grants,
//! and the Stripe price that sells it (a plan without one, like `free`, cannot be bought).
//!
//! Written as `name:monthly_credits[:stripe_price_id]`, comma-separated:
//! `free:0,pro:1000:price_1Pro,studio:5000:price_1Studio`.

use std::str::FromStr;

/// One plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Its name (`pro`).
    pub name: String,
    /// Credits each paid invoice of it grants.
    pub monthly_credits: i64,
    /// The Stripe price that sells it.
    pub stripe_price_id: Option<String>,
}

/// The configured plans, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans(Vec<Plan>);

impl Default for Plans {
    fn default() -> Self {
        "free:0,pro:1000,studio:5000".parse().expect("the default plans parse")
    }
}

impl Plans {
    /// Every plan.
    pub fn all(&self) -> &[Plan] {
        &self.0
    }

    /// The plan named `name`.
    pub fn named(&self, name: &str) -> Option<&Plan> {
        self.0.iter().find(|plan| plan.name == name)
    }

    /// The plan sold by Stripe price `price_id`.
    pub fn priced(&self, price_id: &str) -> Option<&Plan> {
        self.0
            .iter()
            .find(|plan| plan.stripe_price_id.as_deref() == Some(price_id))
    }

    /// The plan of a user without a subscription: the first that Stripe does not sell.
    pub fn free(&self) -> Option<&Plan> {
        self.0.iter().find(|plan| plan.stripe_price_id.is_none())
    }
}

impl FromStr for Plans {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let mut plans: Vec<Plan> = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let mut parts = entry.split(':');
            let (Some(name), Some(credits)) = (parts.next(), parts.next()) else {
                return Err(format!("{entry:?}: expected name:monthly_credits[:stripe_price_id]"));
            };
            let valid_name = !name.is_empty()
                && name.len() <= 32
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !valid_name {
                return Err(format!("{entry:?}: a plan name is 1 to 32 of a-z, 0-9, - and _"));
            }
            let monthly_credits = credits
                .parse::<i64>()
                .ok()
                .filter(|credits| (0..=100_000_000).contains(credits))
                .ok_or_else(|| format!("{entry:?}: the monthly credits must be a whole number from 0"))?;
            let stripe_price_id = parts.next().filter(|price| !price.is_empty()).map(str::to_owned);
            if parts.next().is_some() {
                return Err(format!("{entry:?}: too many fields"));
            }
            if plans.iter().any(|plan| plan.name == name) {
                return Err(format!("plan {name:?} is named twice"));
            }
            plans.push(Plan {
                name: name.to_owned(),
                monthly_credits,
                stripe_price_id,
            });
        }
        if plans.is_empty() {
            return Err("at least one plan is needed".to_owned());
        }
        Ok(Self(plans))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_with_and_without_a_price() {
        let plans: Plans = "free:0, pro:1000:price_pro,studio:5000:price_studio"
            .parse()
            .expect("plans");
        assert_eq!(plans.all().len(), 3);
        assert_eq!(
            plans.named("pro").and_then(|p| p.stripe_price_id.as_deref()),
            Some("price_pro")
        );
        assert_eq!(plans.priced("price_studio").map(|p| p.monthly_credits), Some(5000));
        assert_eq!(plans.free().map(|p| p.name.as_str()), Some("free"));
        assert!(plans.named("enterprise").is_none());
    }

    #[test]
    fn malformed_plans_are_refused_with_the_entry_named() {
        for bad in [
            "",
            "pro",
            "pro:-1",
            "pro:many",
            "Pro:10",
            "pro:1:price:x",
            "pro:1,pro:2",
        ] {
            assert!(bad.parse::<Plans>().is_err(), "{bad:?} parsed");
        }
        let error = "pro:lots".parse::<Plans>().expect_err("refused");
        assert!(error.contains("pro:lots"), "{error}");
    }
}
