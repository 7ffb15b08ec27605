//! Access tokens: short-lived JWTs (the opaque refresh and mailed tokens are
//! `keyframe_app::opaque_tokens`).
//!
//! Access tokens follow RFC 8725: the algorithm is pinned to HS256, `iss`, `aud`, `exp` and
//! `sub` are required, the header's `typ` is `at+jwt` and the claims' `typ` is `access`, and
//! `kid` must name one of our keys. Keys rotate: one signs, the retired ones still verify the
//! tokens they signed until those expire; `kid` only ever selects among these.

use crate::settings::ApiSettings;
#[cfg(test)]
use crate::settings::JwtKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use keyframe_domain::ids::{SessionId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// The header `typ` of an access token (RFC 9068).
const ACCESS_HEADER_TYP: &str = "at+jwt";
/// The claims `typ` of an access token.
const ACCESS_TYP: &str = "access";
/// The header `typ` of the token between a login's password and its TOTP code.
const MFA_HEADER_TYP: &str = "mfa+jwt";
/// The claims `typ` of that token.
const MFA_TYP: &str = "mfa";
/// How long the second step of a login may take.
pub const MFA_TOKEN_TTL_SECS: i64 = 300;

/// The claims of the token that proves a login's password, awaiting its TOTP code. It is no
/// access token: its `typ`s differ and it names no session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MfaClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user.
    pub sub: Uuid,
    /// Token kind: `mfa`.
    pub typ: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: Uuid,
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user.
    pub sub: Uuid,
    /// The session the token belongs to.
    pub sid: Uuid,
    /// Token kind: `access`.
    pub typ: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: Uuid,
}

/// Why a token was refused; deliberately not more specific towards the client.
#[derive(Debug, thiserror::Error)]
#[error("invalid token")]
pub struct InvalidToken;

/// Issues and checks tokens.
pub struct Tokens {
    encoding: EncodingKey,
    /// Every key that verifies, by `kid`: the signing key and the retired ones.
    decoding: HashMap<String, DecodingKey>,
    key_id: String,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    validation: Validation,
}

impl Tokens {
    /// Tokens signed with the configured secret.
    pub fn new(settings: &ApiSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.jwt_issuer]);
        validation.set_audience(&[&settings.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let mut decoding: HashMap<String, DecodingKey> = settings
            .jwt_retired_keys
            .iter()
            .map(|key| (key.id.clone(), DecodingKey::from_secret(key.secret.as_bytes())))
            .collect();
        decoding.insert(
            settings.jwt_key_id.clone(),
            DecodingKey::from_secret(settings.jwt_secret.as_bytes()),
        );
        Self {
            encoding: EncodingKey::from_secret(settings.jwt_secret.as_bytes()),
            decoding,
            key_id: settings.jwt_key_id.clone(),
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            access_ttl: settings.access_token_ttl,
            validation,
        }
    }

    /// An access token for `user` in `session`, and its lifetime in seconds.
    pub fn issue_access(&self, user: UserId, session: SessionId, now: chrono::DateTime<chrono::Utc>) -> (String, u64) {
        let ttl = self.access_ttl.as_secs();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.0,
            sid: session.0,
            typ: ACCESS_TYP.to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp() + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
            jti: Uuid::now_v7(),
        };
        (self.sign(&claims, ACCESS_HEADER_TYP), ttl)
    }

    /// The claims of a valid access token.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, InvalidToken> {
        let claims: AccessClaims = self.verify(token, ACCESS_HEADER_TYP)?;
        if claims.typ != ACCESS_TYP {
            return Err(InvalidToken);
        }
        Ok(claims)
    }

    /// A token proving `user`'s password, to trade with a TOTP code for a session.
    pub fn issue_mfa(&self, user: UserId, now: chrono::DateTime<chrono::Utc>) -> String {
        let claims = MfaClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.0,
            typ: MFA_TYP.to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp() + MFA_TOKEN_TTL_SECS,
            jti: Uuid::now_v7(),
        };
        self.sign(&claims, MFA_HEADER_TYP)
    }

    /// The user a valid MFA token names.
    pub fn verify_mfa(&self, token: &str) -> Result<UserId, InvalidToken> {
        let claims: MfaClaims = self.verify(token, MFA_HEADER_TYP)?;
        if claims.typ != MFA_TYP {
            return Err(InvalidToken);
        }
        Ok(UserId(claims.sub))
    }

    fn sign(&self, claims: &impl Serialize, typ: &str) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.key_id.clone());
        header.typ = Some(typ.to_owned());
        // Encoding with our own HMAC key and claims cannot fail.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// Checks the header (algorithm, `typ`, one of our `kid`s), the signature and the standard
    /// claims, and answers the claims.
    fn verify<C: serde::de::DeserializeOwned>(&self, token: &str, typ: &str) -> Result<C, InvalidToken> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken)?;
        if header.alg != Algorithm::HS256 || header.typ.as_deref() != Some(typ) {
            return Err(InvalidToken);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(InvalidToken)?;
        let data = jsonwebtoken::decode::<C>(token, key, &self.validation).map_err(|_| InvalidToken)?;
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::Utc;

    fn tokens(secret: &str) -> Tokens {
        Tokens::new(&ApiSettings::new(secret))
    }

    #[test]
    fn an_issued_access_token_verifies() {
        let tokens = tokens("test-secret");
        let (user, session) = (UserId::new(), SessionId::new());
        let (token, ttl) = tokens.issue_access(user, session, Utc::now());
        assert_eq!(ttl, 900);
        let claims = tokens.verify_access(&token).expect("valid");
        assert_eq!((claims.sub, claims.sid), (user.0, session.0));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let (token, _) = tokens("other-secret").issue_access(UserId::new(), SessionId::new(), Utc::now());
        assert!(tokens("test-secret").verify_access(&token).is_err());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let tokens = tokens("test-secret");
        let (token, _) = tokens.issue_access(UserId::new(), SessionId::new(), Utc::now() - chrono::Duration::hours(1));
        assert!(tokens.verify_access(&token).is_err());
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let tokens = tokens("test-secret");
        let (token, _) = tokens.issue_access(UserId::new(), SessionId::new(), Utc::now());
        let mut parts = token.split('.');
        let (_, claims) = (parts.next(), parts.next().expect("claims"));
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
        assert!(tokens.verify_access(&format!("{none_header}.{claims}.")).is_err());
    }

    #[test]
    fn a_token_signed_by_a_retired_key_verifies_until_it_expires_and_an_unknown_kid_never_does() {
        let old = tokens("old-secret");
        let mut settings = ApiSettings::new("new-secret");
        settings.jwt_key_id = "k2".to_owned();
        settings.jwt_retired_keys = vec![JwtKey {
            id: "k1".to_owned(),
            secret: "old-secret".to_owned(),
        }];
        let rotated = Tokens::new(&settings);
        let (user, session) = (UserId::new(), SessionId::new());
        let (by_old_key, _) = old.issue_access(user, session, Utc::now());
        assert_eq!(rotated.verify_access(&by_old_key).expect("still valid").sub, user.0);
        let (by_new_key, _) = rotated.issue_access(user, session, Utc::now());
        assert_eq!(
            jsonwebtoken::decode_header(&by_new_key).expect("header").kid.as_deref(),
            Some("k2")
        );
        assert!(rotated.verify_access(&by_new_key).is_ok());
        // The old key, once dropped from the configuration, no longer verifies anything.
        assert!(tokens("new-secret").verify_access(&by_old_key).is_err());
        let (expired, _) = old.issue_access(user, session, Utc::now() - chrono::Duration::hours(1));
        assert!(rotated.verify_access(&expired).is_err());
    }

    #[test]
    fn an_mfa_token_is_no_access_token_and_the_other_way_round() {
        let tokens = tokens("test-secret");
        let user = UserId::new();
        let mfa = tokens.issue_mfa(user, Utc::now());
        assert_eq!(tokens.verify_mfa(&mfa).expect("valid"), user);
        assert!(tokens.verify_access(&mfa).is_err());
        let (access, _) = tokens.issue_access(user, SessionId::new(), Utc::now());
        assert!(tokens.verify_mfa(&access).is_err());
        let stale = tokens.issue_mfa(user, Utc::now() - chrono::Duration::minutes(6));
        assert!(tokens.verify_mfa(&stale).is_err());
    }
}
