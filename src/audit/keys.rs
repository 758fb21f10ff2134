//! Ed25519 key files and checkpoint signatures.
//!
//! `audit.key` holds the hex of the 32-byte secret seed (mode 0600),
//! `audit.pub` the hex of the 32-byte public key, each on one line.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::AuditError;
use super::record::{Body, Record, sha256};

/// Hex of the first 8 bytes of SHA-256 of a public key: which key signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId(pub String);

// === impl KeyId ===

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &VerifyingKey) -> KeyId {
        KeyId(hex::encode(&sha256(key.as_bytes())[..8]))
    }
}

/// Writes a new key pair as `audit.key` and `audit.pub` in `dir`, refusing
/// to overwrite either. Returns both paths.
pub fn generate_keys(dir: &Path) -> Result<(PathBuf, PathBuf), AuditError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AuditError::Key {
        path: dir.to_path_buf(),
        reason: format!("no randomness from the OS: {e}"),
    })?;
    let key = SigningKey::from_bytes(&seed);
    std::fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
    let secret = dir.join("audit.key");
    let public = dir.join("audit.pub");
    write_new(&secret, 0o600, &hex::encode(seed))?;
    write_new(&public, 0o644, &hex::encode(key.verifying_key().as_bytes()))?;
    Ok((secret, public))
}

pub(crate) fn write_new(path: &Path, mode: u32, hex: &str) -> Result<(), AuditError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| AuditError::io(path, e))?;
    file.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| AuditError::io(path, e))
}

fn read_32(path: &Path) -> Result<[u8; 32], AuditError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuditError::io(path, e))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|e| AuditError::Key {
        path: path.to_path_buf(),
        reason: format!("expected 64 hex digits: {e}"),
    })?;
    Ok(out)
}

/// Reads a secret key written by [`generate_keys`].
pub fn load_signing_key(path: &Path) -> Result<SigningKey, AuditError> {
    Ok(SigningKey::from_bytes(&read_32(path)?))
}

/// Reads a public key written by [`generate_keys`].
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    VerifyingKey::from_bytes(&read_32(path)?).map_err(|e| AuditError::Key {
        path: path.to_path_buf(),
        reason: format!("not an Ed25519 public key: {e}"),
    })
}

/// The bytes a checkpoint's signature covers: its canonical bytes with
/// `sig` empty.
fn signed_bytes(record: &Record) -> Vec<u8> {
    let mut unsigned = record.clone();
    if let Body::Checkpoint(c) = &mut unsigned.body {
        c.sig.clear();
    }
    unsigned.canonical()
}

/// Fills in the signature of a checkpoint record.
pub fn sign(key: &SigningKey, record: &mut Record) {
    let sig = hex::encode(key.sign(&signed_bytes(record)).to_bytes());
    if let Body::Checkpoint(c) = &mut record.body {
        c.sig = sig;
    }
}

/// Whether a checkpoint record's signature is `key`'s.
pub fn check(key: &VerifyingKey, record: &Record) -> bool {
    let Body::Checkpoint(c) = &record.body else {
        return false;
    };
    let mut sig = [0u8; 64];
    if hex::decode_to_slice(&c.sig, &mut sig).is_err() {
        return false;
    }
    key.verify_strict(&signed_bytes(record), &Signature::from_bytes(&sig))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Checkpoint, GENESIS, VERSION};

    #[test]
    fn keygen_writes_private_key_0600_and_signatures_check() {
        let dir = std::env::temp_dir().join(format!("sw-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (secret, public) = generate_keys(&dir).map_err(|e| e.to_string()).unwrap();
        assert!(generate_keys(&dir).is_err(), "must not overwrite");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = load_signing_key(&secret).unwrap();
        let public = load_verifying_key(&public).unwrap();
        let mut record = Record {
            v: VERSION,
            seq: 0,
            prev: GENESIS.into(),
            time: "t".into(),
            body: Body::Checkpoint(Checkpoint {
                key_id: KeyId::of(&public).0,
                closing: true,
                sig: String::new(),
            }),
        };
        sign(&key, &mut record);
        assert!(check(&public, &record));
        record.seq = 1;
        assert!(!check(&public, &record));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
