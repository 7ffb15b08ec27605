//! Validated value types. Each `parse` is the one place its rule lives; the API turns a
//! [`ValidationError`] into a 422 naming the field.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A value that broke its rule, with the field it came from and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The request field, as the client named it.
    pub field: &'static str,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl ValidationError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Longest e-mail address accepted (RFC 5321 path limit).
pub const EMAIL_MAX_LEN: usize = 254;

/// An e-mail address, trimmed and lower-cased, so one mailbox is one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Normalises and checks the shape `local@domain.tld`; deliverability is proven by mail.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let email = raw.trim().to_lowercase();
        // Counted as sent: the limit the API documents.
        if raw.chars().count() > EMAIL_MAX_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be at most {EMAIL_MAX_LEN} characters"),
            ));
        }
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err(ValidationError::new(
                field,
                "must be an e-mail address like name@example.com",
            ));
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shortest password accepted. NIST SP 800-63B-4 asks for 15 when the password is the only
/// factor, which it is until 2FA exists; it is counted in characters, not bytes.
pub const PASSWORD_MIN_CHARS: usize = 15;
/// Longest password accepted: well above NIST's "at least 64", low enough to bound hashing work.
pub const PASSWORD_MAX_CHARS: usize = 256;

/// The least zxcvbn score accepted: 3 is "safely unguessable" (about 10^10 guesses), out of
/// reach of an online attack and costly offline against argon2id.
pub const PASSWORD_MIN_SCORE: u8 = 3;

/// Only this many leading characters are scored: zxcvbn's matching grows faster than linearly
/// with length, and a password whose first 100 characters are strong is strong.
const PASSWORD_SCORED_CHARS: usize = 100;

/// A candidate password that meets the policy. Never stored, logged or put in an event: only its
/// hash is. No composition rules, no truncation (NIST SP 800-63B).
pub struct Password(String);

impl Password {
    /// Checks the policy: a length of [`PASSWORD_MIN_CHARS`] to [`PASSWORD_MAX_CHARS`]
    /// characters, and not common, breached-looking or guessable (zxcvbn's dictionaries of
    /// common and leaked passwords, names and words, keyboard walks, repeats, sequences and
    /// dates, and `related`: the account's own e-mail and name). The message says why.
    pub fn parse(field: &'static str, raw: &str, related: &[&str]) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at least {PASSWORD_MIN_CHARS} characters; a passphrase of a few words works well"),
            ));
        }
        if chars > PASSWORD_MAX_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at most {PASSWORD_MAX_CHARS} characters"),
            ));
        }
        // Context-specific words (NIST SP 800-63B 5.1.1.2): the account's own e-mail and name
        // parts of four characters or more, and the service's name.
        let related: Vec<String> = related
            .iter()
            .flat_map(|text| text.split(|c: char| !c.is_alphanumeric()))
            .map(str::to_lowercase)
            .chain(std::iter::once("keyframe".to_owned()))
            .filter(|part| part.chars().count() >= 4)
            .collect();
        let folded: String = raw
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        if let Some(word) = related.iter().find(|word| folded.contains(word.as_str())) {
            return Err(ValidationError::new(
                field,
                format!(
                    "must not contain \"{word}\": it is part of your e-mail address or name, or this service's name"
                ),
            ));
        }
        let scored: String = raw.chars().take(PASSWORD_SCORED_CHARS).collect();
        let related: Vec<&str> = related.iter().map(String::as_str).collect();
        let estimate = zxcvbn::zxcvbn(&scored, &related);
        if u8::from(estimate.score()) < PASSWORD_MIN_SCORE {
            let mut reasons = Vec::new();
            if let Some(feedback) = estimate.feedback() {
                if let Some(warning) = feedback.warning() {
                    reasons.push(warning.to_string());
                }
                reasons.extend(feedback.suggestions().iter().map(ToString::to_string));
            }
            if reasons.is_empty() {
                reasons.push("It is too easy to guess.".to_owned());
            }
            return Err(ValidationError::new(
                field,
                format!(
                    "is too easy to guess: {} Use a few unrelated words, or a password manager.",
                    reasons.join(" ")
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A PHC-format password hash (argon2id); the only form of a password Keyframe keeps.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct PasswordHash(pub String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// A SHA-256 (hex) of an opaque token; the token itself is only ever held by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct TokenHash(pub String);

/// A secret encrypted by the API's envelope encryption: a data key wrapped by the master key
/// `key_id`, and the secret under that data key (both base64, each `nonce || ciphertext`).
/// Only this form of a user's secret is ever stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Which master key wrapped the data key.
    pub key_id: String,
    /// The data key, encrypted by the master key.
    pub wrapped_key: String,
    /// The secret, encrypted by the data key.
    pub ciphertext: String,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The name of a third-party service whose API key a user stores (`openai`, `replicate`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyProvider(String);

impl ApiKeyProvider {
    /// Longest provider name.
    pub const MAX_CHARS: usize = 40;

    /// Lower-case letters, digits and `-`, 1 to 40 of them.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_CHARS
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                field,
                format!("must be 1 to {} lower-case letters, digits or '-'", Self::MAX_CHARS),
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A third-party API key as a user hands it over: checked, then sealed at once.
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// Shortest key accepted.
    pub const MIN_CHARS: usize = 8;
    /// Longest key accepted.
    pub const MAX_CHARS: usize = 4096;

    /// 8 to 4096 printable characters without spaces.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars)
            || raw.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ValidationError::new(
                field,
                format!(
                    "must be {} to {} characters without spaces",
                    Self::MIN_CHARS,
                    Self::MAX_CHARS
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key, to seal.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its last four characters: all of it that is ever shown again.
    pub fn last4(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret(..{})", self.last4())
    }
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, required = $required:expr, max = $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest value accepted, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Trims surrounding white space and checks the length.
            pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
                let value = raw.trim();
                if $required && value.is_empty() {
                    return Err(ValidationError::new(field, "must not be empty"));
                }
                // Counted as sent, surrounding spaces too: the limit the API documents.
                if raw.chars().count() > $max {
                    return Err(ValidationError::new(field, format!("must be at most {} characters", $max)));
                }
                // Anywhere in what was sent, not only inside the trimmed text: the rule the API
                // documents (a pattern over the value as sent).
                if raw.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    return Err(ValidationError::new(field, "must not contain control characters"));
                }
                Ok(Self(value.to_owned()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

bounded_text!(
    /// Why an administrator suspends an account or grants credits (kept in the log and shown
    /// in read models: no control characters, which Postgres text cannot hold, NUL among them).
    Reason, required = true, max = 500
);
bounded_text!(
    /// A person's name as they want it shown.
    FullName, required = true, max = 200
);
bounded_text!(
    /// An organisation's name.
    OrganizationName, required = true, max = 100
);
bounded_text!(
    /// A project's name.
    ProjectName, required = true, max = 200
);
bounded_text!(
    /// A project's free-text description (may be empty).
    ProjectDescription, required = false, max = 5000
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_holds_text_and_no_control_characters() {
        assert_eq!(
            Reason::parse("reason", "  chargeback ").map(|r| r.as_str().to_owned()),
            Ok("chargeback".to_owned())
        );
        for refused in ["", "   ", "beta\u{0}tester", "tab\u{7}bell", &"x".repeat(501)] {
            assert_eq!(
                Reason::parse("reason", refused).map_err(|e| e.field),
                Err("reason"),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn email_is_normalised_so_one_mailbox_is_one_account() {
        let email = EmailAddress::parse("email", "  Alice@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "alice@example.com");
    }

    #[test]
    fn malformed_emails_are_refused_with_the_field_named() {
        for raw in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            let err = EmailAddress::parse("email", raw).expect_err(raw);
            assert_eq!(err.field, "email");
        }
    }

    #[test]
    fn passwords_are_counted_in_characters_and_never_truncated() {
        assert!(Password::parse("password", "short", &[]).is_err());
        let accented = "éléphant rosé dîne à minuit";
        assert!(accented.chars().count() >= PASSWORD_MIN_CHARS && accented.len() > accented.chars().count());
        assert!(Password::parse("password", accented, &[]).is_ok());
        let long = "tangerine orbit quietly ".repeat(10);
        let pw = Password::parse("password", &long, &[]).expect("a long strong passphrase");
        assert_eq!(pw.expose(), long, "never truncated");
        assert!(Password::parse("password", &"x".repeat(PASSWORD_MAX_CHARS + 1), &[]).is_err());
        let pw = Password::parse("password", "correct horse battery staple", &[]).expect("valid");
        assert_eq!(format!("{pw:?}"), "Password(<redacted>)");
    }

    #[test]
    fn common_repeated_and_personal_passwords_are_refused_with_a_reason() {
        for weak in [
            "passwordpassword",
            "123456789012345",
            "aaaaaaaaaaaaaaaaaaaa",
            "qwertyuiopasdfgh",
            "iloveyouiloveyou",
        ] {
            let error = Password::parse("password", weak, &[]).expect_err(weak);
            assert_eq!(error.field, "password");
            assert!(
                error.message.starts_with("is too easy to guess: "),
                "{weak}: {}",
                error.message
            );
            assert!(
                error.message.len() > "is too easy to guess: ".len() + 60,
                "{weak}: says why"
            );
        }
        let personal = Password::parse(
            "password",
            "Ada Lovelace 1815 forever",
            &["ada@example.com", "Ada Lovelace"],
        );
        let error = personal.expect_err("the account's own name");
        assert!(error.message.contains("\"lovelace\""), "{}", error.message);
        assert!(Password::parse("password", "my keyframe password 2026", &[]).is_err());
    }

    #[test]
    fn bounded_text_is_trimmed_and_limited() {
        assert_eq!(
            ProjectName::parse("name", "  Trailer  ").expect("valid").as_str(),
            "Trailer"
        );
        assert!(ProjectName::parse("name", "   ").is_err());
        assert!(ProjectName::parse("name", &"n".repeat(ProjectName::MAX_CHARS + 1)).is_err());
        assert!(ProjectName::parse("name", "a\u{0}b").is_err());
        assert_eq!(
            ProjectDescription::parse("description", "")
                .expect("empty is fine")
                .as_str(),
            ""
        );
    }
}
