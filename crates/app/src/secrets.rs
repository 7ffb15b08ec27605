//! Envelope encryption of secrets Keyframe keeps for users (third-party API keys, TOTP seeds).
//!
//! Each secret gets a data key of its own (AES-256-GCM, random 96-bit nonce); the data key is
//! wrapped by the master key from `KEYFRAME_MASTER_KEY` (AES-256-GCM as well). What is stored,
//! in events and anywhere else, is only the [`SealedSecret`]: the wrapped key and the
//! ciphertext. Both are bound to what they protect (the associated data names the owner and the
//! purpose), so a sealed value copied onto another account or purpose does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyframe_domain::values::SealedSecret;
use rand::RngCore;

/// The master key as configured.
#[derive(Clone)]
pub struct MasterKeySetting {
    /// Its id, written into everything it seals.
    pub id: String,
    /// 32 bytes, base64; `None` makes a random one (development: sealed values die with the
    /// process).
    pub base64: Option<String>,
}

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// The key that wraps every data key.
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The master key is not 32 bytes of base64.
    #[error("the master key must be 32 bytes, base64-encoded (openssl rand -base64 32)")]
    BadMasterKey,
    /// Sealed under another master key.
    #[error("sealed under master key {0}, which is not configured")]
    UnknownKey(String),
    /// Tampered with, copied from elsewhere, or corrupt.
    #[error("the sealed secret does not open")]
    Corrupt,
}

impl MasterKey {
    /// The key from its base64 form, known as `id` in what it seals.
    pub fn from_base64(id: &str, encoded: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD.decode(encoded.trim()).map_err(|_| SecretError::BadMasterKey)?;
        if bytes.len() != KEY_BYTES {
            return Err(SecretError::BadMasterKey);
        }
        Ok(Self {
            id: id.to_owned(),
            cipher: Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretError::BadMasterKey)?,
        })
    }

    /// A random key (development: what it seals dies with the process).
    pub fn random(id: &str) -> Self {
        let mut bytes = [0_u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self {
            id: id.to_owned(),
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(bytes)),
        }
    }

    /// Encrypts `plaintext` under a fresh data key, bound to `context`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> SealedSecret {
        let mut data_key = [0_u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut data_key);
        let data_cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(data_key));
        let ciphertext = encrypt(&data_cipher, plaintext, context.as_bytes());
        let wrapped_key = encrypt(&self.cipher, &data_key, self.wrap_context(context).as_bytes());
        SealedSecret {
            key_id: self.id.clone(),
            wrapped_key: STANDARD.encode(wrapped_key),
            ciphertext: STANDARD.encode(ciphertext),
        }
    }

    /// Decrypts what [`MasterKey::seal`] made for the same `context`.
    pub fn open(&self, sealed: &SealedSecret, context: &str) -> Result<Vec<u8>, SecretError> {
        if sealed.key_id != self.id {
            return Err(SecretError::UnknownKey(sealed.key_id.clone()));
        }
        let wrapped = STANDARD.decode(&sealed.wrapped_key).map_err(|_| SecretError::Corrupt)?;
        let data_key = decrypt(&self.cipher, &wrapped, self.wrap_context(context).as_bytes())?;
        let data_cipher = Aes256Gcm::new_from_slice(&data_key).map_err(|_| SecretError::Corrupt)?;
        let ciphertext = STANDARD.decode(&sealed.ciphertext).map_err(|_| SecretError::Corrupt)?;
        decrypt(&data_cipher, &ciphertext, context.as_bytes())
    }

    fn wrap_context(&self, context: &str) -> String {
        format!("keyframe-data-key:{}:{context}", self.id)
    }
}

/// `nonce || AES-256-GCM(plaintext)`.
fn encrypt(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0_u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let payload = Payload { msg: plaintext, aad };
    // AES-GCM fails only for inputs beyond 64 GiB.
    let ciphertext = cipher.encrypt(&Nonce::from(nonce), payload).unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend(ciphertext);
    out
}

fn decrypt(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
    if sealed.len() < NONCE_BYTES {
        return Err(SecretError::Corrupt);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SecretError::Corrupt)?;
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad })
        .map_err(|_| SecretError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_base64("m1", &STANDARD.encode([7_u8; KEY_BYTES])).expect("key")
    }

    #[test]
    fn a_sealed_secret_opens_with_the_same_key_and_context_only() {
        let sealed = key().seal(b"sk-live-1234567890", "api-key:user-1:openai");
        assert!(!sealed.ciphertext.contains("1234567890"));
        assert_eq!(
            key().open(&sealed, "api-key:user-1:openai").expect("opens"),
            b"sk-live-1234567890"
        );
        assert!(matches!(
            key().open(&sealed, "api-key:user-2:openai"),
            Err(SecretError::Corrupt)
        ));
        let other = MasterKey::from_base64("m1", &STANDARD.encode([8_u8; KEY_BYTES])).expect("key");
        assert!(matches!(
            other.open(&sealed, "api-key:user-1:openai"),
            Err(SecretError::Corrupt)
        ));
        assert!(matches!(
            MasterKey::random("m2").open(&sealed, "api-key:user-1:openai"),
            Err(SecretError::UnknownKey(_))
        ));
    }

    #[test]
    fn the_same_secret_sealed_twice_looks_different() {
        let (first, second) = (key().seal(b"same", "c"), key().seal(b"same", "c"));
        assert_ne!(first.ciphertext, second.ciphertext);
        assert_ne!(first.wrapped_key, second.wrapped_key);
    }

    #[test]
    fn a_tampered_ciphertext_does_not_open() {
        let mut sealed = key().seal(b"secret", "c");
        let mut bytes = STANDARD.decode(&sealed.ciphertext).expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        sealed.ciphertext = STANDARD.encode(bytes);
        assert!(matches!(key().open(&sealed, "c"), Err(SecretError::Corrupt)));
    }

    #[test]
    fn a_master_key_must_be_32_bytes_of_base64() {
        assert!(MasterKey::from_base64("m1", "too short").is_err());
        assert!(MasterKey::from_base64("m1", &STANDARD.encode([1_u8; 16])).is_err());
    }
}
