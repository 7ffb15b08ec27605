//! Opaque tokens: refresh tokens and mailed ones (e-mail verification, password reset), stored
//! only as a hash.
//!
//! A token is `<owner id>.<32 random bytes, base64url>`. The owner id finds the aggregate (the
//! session, the user); the hash of the whole token must match the one it keeps.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyframe_domain::values::TokenHash;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A fresh opaque token naming `owner` (the session of a refresh token, the user of a mailed
/// one), and the hash to store: `<owner>.<32 random bytes, base64url>`.
pub fn new_opaque_token(owner: Uuid) -> (String, TokenHash) {
    let mut secret = [0_u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("{owner}.{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash_opaque_token(&token);
    (token, hash)
}

/// The stored form of an opaque token: SHA-256, hex. The token carries 256 random bits, so a
/// fast hash is enough (no password-style stretching needed).
pub fn hash_opaque_token(token: &str) -> TokenHash {
    let digest = Sha256::digest(token.as_bytes());
    TokenHash(digest.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The owner an opaque token claims (checked against the stored hash afterwards).
pub fn opaque_token_owner(token: &str) -> Option<Uuid> {
    let (owner, secret) = token.split_once('.')?;
    if secret.is_empty() {
        return None;
    }
    owner.parse::<Uuid>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyframe_domain::ids::SessionId;

    #[test]
    fn opaque_tokens_name_their_owner_and_hash_stably() {
        let session = SessionId::new();
        let (token, hash) = new_opaque_token(session.0);
        assert_eq!(opaque_token_owner(&token), Some(session.0));
        assert_eq!(hash_opaque_token(&token), hash);
        assert_ne!(new_opaque_token(session.0).0, token);
        assert_eq!(opaque_token_owner("not-a-token"), None);
        assert_eq!(opaque_token_owner(&format!("{session}.")), None);
    }
}
