//! Bearer secrets: API keys (random, shown once, stored as SHA-256) and signed URLs
//! (HMAC-SHA256 over `METHOD\npath\nexpires`, verified against the current and previous keys).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use storefront_domain::timestamp::Timestamp;
use storefront_domain::{DomainError, ErrorCode};
use subtle::ConstantTimeEq;

pub const API_KEY_PREFIX: &str = "sf_live_";

/// 256 random bits, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub const RESOURCE_TOKEN_PREFIX: &str = "sf_res_";

/// Settings that hold the URL-signing key (generated on first start, shared by every replica)
/// and the retired keys that still verify.
pub const SIGNING_KEY_SETTING: &str = "url_signing_key";
pub const PREVIOUS_SIGNING_KEYS_SETTING: &str = "url_signing_keys_previous";

pub fn new_resource_token() -> String {
    format!("{RESOURCE_TOKEN_PREFIX}{}", random_token())
}

pub fn new_api_key_secret() -> String {
    format!("{API_KEY_PREFIX}{}", random_token())
}

/// SHA-256 is enough for secrets with 256 bits of entropy: there is nothing to brute-force.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The part of a key shown in listings, enough to tell keys apart and useless to an attacker.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(API_KEY_PREFIX.len() + 4).collect()
}

type HmacSha256 = Hmac<Sha256>;

/// Seals secrets at rest (machine private keys) with AES-256-GCM: `base64(nonce || ciphertext)`.
#[derive(Clone)]
pub struct SecretBox {
    /// Shared: the `App` holding it is cloned for every request, and the key schedule is large.
    cipher: std::sync::Arc<aes_gcm::Aes256Gcm>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// From a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        use aes_gcm::KeyInit;
        Self {
            cipher: std::sync::Arc::new(aes_gcm::Aes256Gcm::new(key.into())),
        }
    }

    /// A box with a random key (tests, and processes that seal nothing that must outlive them).
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::new(&key)
    }

    pub fn seal(&self, plaintext: &str) -> String {
        use aes_gcm::aead::Aead;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(aes_gcm::Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption does not fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend(ciphertext);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// `None` when the value was not sealed with this key or was tampered with.
    pub fn open(&self, sealed: &str) -> Option<String> {
        use aes_gcm::aead::Aead;
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(aes_gcm::Nonce::from_slice(nonce), ciphertext)
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

/// Signs and verifies URLs. The first key signs; every key verifies, so a rotated-out key keeps
/// already issued URLs valid until they expire.
#[derive(Clone)]
pub struct UrlSigner {
    /// Shared: the `App` holding it is cloned for every request (a cloned `Vec` would allocate).
    keys: std::sync::Arc<[Vec<u8>]>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UrlSigner({} keys)", self.keys.len())
    }
}

impl UrlSigner {
    /// `current` signs; `previous` only verify. Panics on an empty current key, which only a
    /// programming error can produce (keys come from settings generated at first start).
    pub fn new(current: Vec<u8>, previous: Vec<Vec<u8>>) -> Self {
        assert!(!current.is_empty(), "signing key must not be empty");
        let mut keys = vec![current];
        keys.extend(previous.into_iter().filter(|k| !k.is_empty()));
        Self { keys: keys.into() }
    }

    fn mac(key: &[u8], method: &str, path: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(format!("{method}\n{path}\n{expires}").as_bytes());
        mac
    }

    /// The query string (`expires=...&sig=...`) that authorizes `method` on `path` until
    /// `expires_at`.
    pub fn sign(&self, method: &str, path: &str, expires_at: Timestamp) -> String {
        let expires = expires_at.timestamp();
        let sig = Self::mac(&self.keys[0], method, path, expires)
            .finalize()
            .into_bytes();
        format!("expires={expires}&sig={}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Checks a signature first (a tampered URL is `invalid_signature` whatever its expiry),
    /// then the expiry.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        expires: Option<&str>,
        sig: Option<&str>,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        let invalid = invalid_signature;
        // Exactly the spellings `sign` writes: a decimal `expires` without sign, leading zeros
        // or exponent, and unpadded base64url that re-encodes to itself.
        let expires: i64 = expires
            .and_then(|e| e.parse::<i64>().ok().filter(|n| n.to_string() == e))
            .ok_or_else(invalid)?;
        let sig = sig
            .and_then(|s| {
                URL_SAFE_NO_PAD
                    .decode(s)
                    .ok()
                    .filter(|raw| URL_SAFE_NO_PAD.encode(raw) == s)
            })
            .ok_or_else(invalid)?;
        let valid = self.keys.iter().any(|k| {
            Self::mac(k, method, path, expires)
                .verify_slice(&sig)
                .is_ok()
        });
        if !valid {
            return Err(invalid());
        }
        if now.timestamp() >= expires {
            return Err(DomainError::new(
                ErrorCode::SignatureExpired,
                "The signed URL has expired.",
                "Fetch the order again with an API key to get a fresh URL.",
            ));
        }
        Ok(())
    }
}

/// `403 invalid_signature`: a signed URL that is not exactly as it was handed out.
pub fn invalid_signature() -> DomainError {
    DomainError::new(
        ErrorCode::InvalidSignature,
        "The URL's signature is missing or does not match.",
        "Use the signed URL exactly as the API returned it.",
    )
}

/// The path of an absolute or relative URL: from the first `/` after the authority to the query.
fn url_path(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    path.split('?').next().unwrap_or_default()
}

impl UrlSigner {
    /// Removes the signature of every signed URL in a JSON answer about to be stored (the
    /// replay copy of an idempotent request): signed URLs are bearer secrets, never kept.
    /// `expires` stays, so [`UrlSigner::resign`] can restore the same URL.
    pub fn strip_signatures(value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) if s.contains("expires=") && s.contains("sig=") => {
                if let Some((head, query)) = s.split_once('?') {
                    let kept: Vec<&str> = query
                        .split('&')
                        .filter(|p| !p.starts_with("sig="))
                        .collect();
                    *s = format!("{head}?{}", kept.join("&"));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(Self::strip_signatures),
            Value::Object(map) => map.values_mut().for_each(Self::strip_signatures),
            _ => {}
        }
    }

    /// Signs again the URLs [`UrlSigner::strip_signatures`] stripped, with the method of the
    /// action they belong to (`GET` for a bare URL such as `status_url`).
    pub fn resign(&self, value: &mut serde_json::Value) {
        self.resign_with(value, "GET");
    }

    fn resign_with(&self, value: &mut serde_json::Value, method: &str) {
        use serde_json::Value;
        match value {
            Value::String(s) if s.contains("?expires=") && !s.contains("sig=") => {
                let expires = s
                    .split_once('?')
                    .and_then(|(_, q)| q.split('&').find_map(|p| p.strip_prefix("expires=")))
                    .and_then(|e| e.parse::<i64>().ok())
                    .and_then(|e| chrono::DateTime::from_timestamp(e, 0));
                if let Some(expires_at) = expires {
                    let head = s.split('?').next().unwrap_or_default().to_owned();
                    let query = self.sign(method, url_path(&head), expires_at);
                    *s = format!("{head}?{query}");
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.resign_with(v, method)),
            Value::Object(map) => {
                let method = map
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or("GET")
                    .to_owned();
                map.values_mut().for_each(|v| self.resign_with(v, &method));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let a = SecretBox::ephemeral();
        let sealed = a.seal("-----BEGIN OPENSSH PRIVATE KEY-----");
        assert!(!sealed.contains("OPENSSH"));
        assert_eq!(
            a.open(&sealed).as_deref(),
            Some("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        assert_eq!(SecretBox::ephemeral().open(&sealed), None);
    }

    #[test]
    fn stored_answers_keep_no_signature_and_replay_the_same_urls() {
        let signer = UrlSigner::new(b"key".to_vec(), vec![]);
        let at = chrono::DateTime::from_timestamp(Utc::now().timestamp() + 600, 0).unwrap();
        let status = format!(
            "https://shop.example/api/v1/orders/o/status?{}",
            signer.sign("GET", "/api/v1/orders/o/status", at)
        );
        let install = format!(
            "https://shop.example/api/v1/orders/o/install?{}",
            signer.sign("POST", "/api/v1/orders/o/install", at)
        );
        let original = serde_json::json!({"order": {"status_url": status, "install_action": {"method": "POST", "url": install}, "note": "sig= elsewhere"}});
        let mut stored = original.clone();
        UrlSigner::strip_signatures(&mut stored);
        assert!(!stored["order"]["status_url"]
            .as_str()
            .unwrap()
            .contains("sig="));
        assert!(!stored["order"]["install_action"]["url"]
            .as_str()
            .unwrap()
            .contains("sig="));
        signer.resign(&mut stored);
        assert_eq!(stored, original);
    }

    #[test]
    fn signed_urls_verify_reject_tampering_and_expire() {
        let now = Utc::now();
        let old = UrlSigner::new(b"old-key".to_vec(), vec![]);
        let signer = UrlSigner::new(b"new-key".to_vec(), vec![b"old-key".to_vec()]);
        let q = old.sign("GET", "/api/v1/orders/x/status", now + Duration::minutes(5));
        let (e, s) = q.split_once('&').unwrap();
        let e = e.strip_prefix("expires=").unwrap();
        let s = s.strip_prefix("sig=").unwrap();
        assert!(
            signer
                .verify("GET", "/api/v1/orders/x/status", Some(e), Some(s), now)
                .is_ok(),
            "previous key still verifies"
        );
        let tampered = signer
            .verify("GET", "/api/v1/orders/y/status", Some(e), Some(s), now)
            .unwrap_err();
        assert_eq!(tampered.code, ErrorCode::InvalidSignature);
        let late = signer
            .verify(
                "GET",
                "/api/v1/orders/x/status",
                Some(e),
                Some(s),
                now + Duration::minutes(6),
            )
            .unwrap_err();
        assert_eq!(late.code, ErrorCode::SignatureExpired);
    }
}
