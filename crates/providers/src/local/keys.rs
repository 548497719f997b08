//! SSH keys: host keys for leases, key pairs for agents that bring none, and checks on the keys
//! agents bring.

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

/// A generated key pair in OpenSSH formats.
pub struct KeyPair {
    pub private_openssh: String,
    pub public_openssh: String,
    /// The public key without its comment (`ssh-ed25519 AAAA...`), as a known_hosts line has it.
    pub public_key: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

pub fn generate_ed25519(comment: &str) -> KeyPair {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    ed25519_from_seed(&seed, comment)
}

/// The key pair of a 32-byte seed: the same seed gives the same pair (a provisioner that derives
/// the seed from a secret can hand over the same key again after a crash).
pub fn ed25519_from_seed(seed: &[u8; 32], comment: &str) -> KeyPair {
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(seed));
    key.set_comment(comment);
    let public = key.public_key();
    KeyPair {
        private_openssh: key.to_openssh(LineEnding::LF).expect("encodes").to_string(),
        public_openssh: public.to_openssh().expect("encodes"),
        public_key: without_comment(public),
        fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
    }
}

/// Parses an agent's public key line and refuses weak ones (DSA, RSA under 2048 bits).
pub fn check_public_key(line: &str) -> Result<PublicKey, String> {
    let key = PublicKey::from_openssh(line.trim())
        .map_err(|_| "not an OpenSSH public key line".to_owned())?;
    match key.algorithm() {
        Algorithm::Dsa => Err("DSA keys are too weak; use ed25519".into()),
        Algorithm::Rsa { .. } => {
            let bits = key
                .key_data()
                .rsa()
                .map(|k| k.n().as_positive_bytes().map_or(0, |b| b.len() * 8))
                .unwrap_or(0);
            if bits < 2048 {
                Err(format!(
                    "RSA keys need at least 2048 bits (this one has {bits}); use ed25519"
                ))
            } else {
                Ok(key)
            }
        }
        _ => Ok(key),
    }
}

/// `algorithm base64`, without the comment a key line may carry.
pub fn without_comment(key: &PublicKey) -> String {
    let mut bare = key.clone();
    bare.set_comment("");
    bare.to_openssh().expect("encodes").trim_end().to_owned()
}

pub fn fingerprint_of(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A client handler that accepts exactly one host key.
struct ExpectHostKey {
    fingerprint: String,
}

impl russh::client::Handler for ExpectHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                fingerprint_of(key) == self.fingerprint
            }
            russh::keys::PublicKeyOrCertificate::Certificate(_) => false,
        })
    }
}

/// Whether an SSH handshake with `host:port` succeeds within 3 s and shows the host key of
/// `fingerprint` (a machine is ready only when it is the machine we set up).
pub async fn presents_host_key(host: &str, port: u16, fingerprint: &str) -> bool {
    let config = std::sync::Arc::new(russh::client::Config::default());
    let handler = ExpectHostKey {
        fingerprint: fingerprint.to_owned(),
    };
    let attempt = russh::client::connect(config, (host, port), handler);
    match tokio::time::timeout(std::time::Duration::from_secs(3), attempt).await {
        Ok(Ok(handle)) => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
            true
        }
        Ok(Err(_)) | Err(_) => false,
    }
}
