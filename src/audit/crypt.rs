//! Encryption at rest: XChaCha20-Poly1305 envelopes around record bodies.
//!
//! The key file holds 32 bytes, as 64 hex digits on one line (what
//! `sidewatch keygen --encryption` writes) or raw. Its id — hex of the
//! first 8 bytes of SHA-256 of a fixed label and the key — is written in
//! the header of every segment it encrypts, so readers can say which key
//! they need without holding it.
//!
//! An envelope is `nonce (24) | ciphertext | tag (16)`. The associated data
//! is the segment header (magic and key id) and the record's sequence, so
//! an envelope moved to another position or segment fails to open. Nonces
//! are a random 16-byte prefix drawn per writer session followed by an
//! 8-byte counter: unique without a syscall per record, and never reused
//! when a torn tail is cut and the same sequence is written again.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Key, KeyInit, Tag, XChaCha20Poly1305, XNonce};

use super::AuditError;
use super::keys::write_new;
use super::record::sha256;

/// Bytes of a nonce.
pub const NONCE_LEN: usize = 24;

/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 16;

/// Bytes an envelope adds to the plaintext.
pub const ENVELOPE_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Mixed into the key id so that it says nothing about any other use of
/// the key's hash.
const ID_LABEL: &[u8] = b"sidewatch audit encryption key id\0";

/// A 256-bit encryption key and its id.
#[derive(Clone)]
pub struct EncryptionKey {
    cipher: XChaCha20Poly1305,
    id: [u8; 8],
}

/// Seals envelopes for one writer session: the key and a nonce source.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: EncryptionKey,
    prefix: [u8; 16],
    counter: u64,
}

/// Why an envelope did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct OpenError;

// === impl EncryptionKey ===

impl EncryptionKey {
    /// The key with these bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> EncryptionKey {
        let mut labelled = ID_LABEL.to_vec();
        labelled.extend_from_slice(bytes);
        let mut id = [0u8; 8];
        id.copy_from_slice(&sha256(&labelled)[..8]);
        EncryptionKey {
            cipher: XChaCha20Poly1305::new(&Key::from(*bytes)),
            id,
        }
    }

    /// The raw id written in segment headers.
    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    /// The id as `audit verify` and errors print it.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// Opens `envelope` (the record at `seq` of a segment whose header is
    /// `header`) into its plaintext.
    pub fn open(&self, header: &[u8], seq: u64, envelope: &[u8]) -> Result<Vec<u8>, OpenError> {
        if envelope.len() < ENVELOPE_OVERHEAD {
            return Err(OpenError);
        }
        let (nonce, rest) = envelope.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError)?;
        let tag = Tag::try_from(tag).map_err(|_| OpenError)?;
        let mut plain = ciphertext.to_vec();
        self.cipher
            .decrypt_inout_detached(&nonce, &aad(header, seq), plain.as_mut_slice().into(), &tag)
            .map_err(|_| OpenError)?;
        Ok(plain)
    }
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        write!(f, "EncryptionKey({})", self.id_hex())
    }
}

// === impl Sealer ===

impl Sealer {
    /// A sealer with a fresh random nonce prefix.
    pub(crate) fn new(key: EncryptionKey) -> Result<Sealer, AuditError> {
        let mut prefix = [0u8; 16];
        getrandom::fill(&mut prefix).map_err(|e| AuditError::Key {
            path: PathBuf::from("(nonce)"),
            reason: format!("no randomness from the OS: {e}"),
        })?;
        Ok(Sealer {
            key,
            prefix,
            counter: 0,
        })
    }

    /// The key sealed with.
    pub(crate) fn key(&self) -> &EncryptionKey {
        &self.key
    }

    /// Seals `buf[at..]` into an envelope in place: `buf[at..at + 24]` is
    /// room for the nonce, the plaintext follows, the tag is appended.
    /// `seq` is the record's sequence in a segment with `header`.
    pub(crate) fn seal_in_place(&mut self, header: &[u8], seq: u64, buf: &mut Vec<u8>, at: usize) {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..16].copy_from_slice(&self.prefix);
        nonce[16..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;
        buf[at..at + NONCE_LEN].copy_from_slice(&nonce);
        // Only a message longer than XChaCha20's 256 GiB limit fails, and
        // frames hold at most 64 MiB; were it to fail, the empty tag would
        // fail to open and be reported, never pass silently.
        let tag = self
            .key
            .cipher
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &aad(header, seq),
                (&mut buf[at + NONCE_LEN..]).into(),
            )
            .unwrap_or_default();
        buf.extend_from_slice(&tag);
    }
}

/// The key among `keys` whose id is `id`, or why none is: which key id is
/// needed, and which ids were given.
pub fn find_key<'k>(keys: &'k [EncryptionKey], id: &[u8; 8]) -> Result<&'k EncryptionKey, String> {
    if let Some(key) = keys.iter().find(|k| k.id == *id) {
        return Ok(key);
    }
    let id = hex::encode(id);
    if keys.is_empty() {
        return Err(format!(
            "encrypted with key id {id}: pass --key FILE holding that key"
        ));
    }
    let given: Vec<String> = keys.iter().map(EncryptionKey::id_hex).collect();
    Err(format!(
        "encrypted with key id {id}, but the key given has id {}",
        given.join(", ")
    ))
}

/// The associated data of the record at `seq` in a segment with `header`.
fn aad(header: &[u8], seq: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 8);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&seq.to_le_bytes());
    aad
}

/// Reads an encryption key file: 64 hex digits (surrounding whitespace
/// ignored) or exactly 32 raw bytes.
pub fn load_encryption_key(path: &Path) -> Result<EncryptionKey, AuditError> {
    let bytes = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
    let mut key = [0u8; 32];
    if bytes.len() == 32 {
        key.copy_from_slice(&bytes);
    } else {
        let text = std::str::from_utf8(&bytes).unwrap_or("");
        hex::decode_to_slice(text.trim(), &mut key).map_err(|e| AuditError::Key {
            path: path.to_path_buf(),
            reason: format!("expected 64 hex digits or 32 raw bytes: {e}"),
        })?;
    }
    Ok(EncryptionKey::from_bytes(&key))
}

/// Writes a new random encryption key as `audit.enc` in `dir` (mode 0600),
/// refusing to overwrite one.
pub fn generate_encryption_key(dir: &Path) -> Result<PathBuf, AuditError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| AuditError::Key {
        path: dir.to_path_buf(),
        reason: format!("no randomness from the OS: {e}"),
    })?;
    std::fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
    let path = dir.join("audit.enc");
    write_new(&path, 0o600, &hex::encode(key))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_open_only_at_their_place_with_their_key() {
        let key = EncryptionKey::from_bytes(&[1; 32]);
        let mut sealer = Sealer::new(key.clone()).unwrap();
        let header = b"header..";
        let mut seal = |seq| {
            let mut out = vec![0; NONCE_LEN];
            out.extend_from_slice(b"{\"x\":1}");
            sealer.seal_in_place(header, seq, &mut out, 0);
            out
        };
        let a = seal(5);
        let b = seal(5);
        assert_ne!(a, b, "a nonce is never reused");
        assert_eq!(a.len(), 7 + ENVELOPE_OVERHEAD);
        assert_eq!(key.open(header, 5, &a).unwrap(), b"{\"x\":1}");
        assert_eq!(key.open(header, 6, &a), Err(OpenError));
        assert_eq!(key.open(b"other...", 5, &a), Err(OpenError));
        let other = EncryptionKey::from_bytes(&[2; 32]);
        assert_ne!(other.id(), key.id());
        assert_eq!(other.open(header, 5, &a), Err(OpenError));
        for i in 0..a.len() {
            let mut bad = a.clone();
            bad[i] ^= 0x20;
            assert_eq!(key.open(header, 5, &bad), Err(OpenError), "byte {i}");
        }
        assert_eq!(key.open(header, 5, &a[..10]), Err(OpenError));
    }

    #[test]
    fn key_files_hex_or_raw() {
        let dir = std::env::temp_dir().join(format!("sw-enc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = generate_encryption_key(&dir).unwrap();
        assert!(generate_encryption_key(&dir).is_err(), "must not overwrite");
        let hex_key = load_encryption_key(&path).unwrap();
        let raw = hex::decode(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        let raw_path = dir.join("raw");
        std::fs::write(&raw_path, &raw).unwrap();
        assert_eq!(load_encryption_key(&raw_path).unwrap().id(), hex_key.id());
        std::fs::write(&raw_path, "abc").unwrap();
        assert!(load_encryption_key(&raw_path).is_err());
        assert!(!format!("{hex_key:?}").contains(&hex::encode(&raw)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
