//! Framing and segment files.
//!
//! A segment is `audit-<first seq, 20 digits>.log`: a header — the 8-byte
//! magic [`MAGIC`], or [`MAGIC_ENCRYPTED`] and the 8-byte id of the key
//! that encrypts it — then frames `len (u32 LE) | body | check`, where
//! `check` is the first 4 bytes of SHA-256(body). The check finds a torn
//! tail without a second checksum crate: the hash is computed anyway for
//! the chain. In an encrypted segment `body` is an envelope (see
//! [`super::crypt`]), so the chain and the check cover what is stored and
//! a torn tail is found without the key.

use std::path::{Path, PathBuf};

use super::AuditError;
use super::record::sha256;

/// The first bytes of a plaintext segment file.
pub const MAGIC: &[u8; 8] = b"SWAUDIT1";

/// The first bytes of an encrypted segment file, followed by the key id.
pub const MAGIC_ENCRYPTED: &[u8; 8] = b"SWAUDIX1";

/// A segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Bodies are canonical records.
    Plain,
    /// Bodies are envelopes sealed with the key of this id.
    Encrypted([u8; 8]),
}

/// The largest body a frame may hold; a longer length is a torn or
/// corrupt frame, not an allocation to attempt.
pub const MAX_BODY: usize = 64 << 20;

/// Bytes a frame adds around its body.
pub const FRAME_OVERHEAD: usize = 8;

/// One frame read back from a segment.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Where the frame starts in the file.
    pub offset: u64,
    /// The record's canonical bytes.
    pub body: Vec<u8>,
    /// SHA-256 of `body`.
    pub hash: [u8; 32],
}

/// A segment's frames and, when it does not end on a frame boundary, where
/// and why the readable part stops.
#[derive(Debug, Default)]
pub struct Scan {
    /// The header, when it is one.
    pub header: Option<Header>,
    /// Whole, checked frames in order.
    pub frames: Vec<Frame>,
    /// Offset and reason of the first unreadable byte, if any.
    pub torn: Option<(u64, &'static str)>,
}

// === impl Header ===

impl Header {
    /// The header's bytes as written at the start of the file.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Header::Plain => MAGIC.to_vec(),
            Header::Encrypted(id) => [&MAGIC_ENCRYPTED[..], id].concat(),
        }
    }

    /// The header at the start of `bytes`, if there is one.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.starts_with(MAGIC) {
            return Some(Header::Plain);
        }
        let id = bytes.strip_prefix(MAGIC_ENCRYPTED)?.get(..8)?;
        let mut out = [0u8; 8];
        out.copy_from_slice(id);
        Some(Header::Encrypted(out))
    }

    /// Its length in bytes.
    pub fn size(&self) -> usize {
        match self {
            Header::Plain => MAGIC.len(),
            Header::Encrypted(_) => MAGIC_ENCRYPTED.len() + 8,
        }
    }
}

/// Splits a segment's bytes into frames.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut out = Scan::default();
    let Some(header) = Header::parse(bytes) else {
        out.torn = Some((0, "missing or bad segment header"));
        return out;
    };
    out.header = Some(header);
    let mut at = header.size();
    while at < bytes.len() {
        let Some(len) = bytes.get(at..at + 4) else {
            out.torn = Some((at as u64, "truncated frame length"));
            break;
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_BODY {
            out.torn = Some((at as u64, "frame length out of range"));
            break;
        }
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            out.torn = Some((at as u64, "truncated frame body"));
            break;
        };
        let Some(check) = bytes.get(at + 4 + len..at + FRAME_OVERHEAD + len) else {
            out.torn = Some((at as u64, "truncated frame check"));
            break;
        };
        let hash = sha256(body);
        if check != &hash[..4] {
            out.torn = Some((at as u64, "frame check mismatch"));
            break;
        }
        out.frames.push(Frame {
            offset: at as u64,
            body: body.to_vec(),
            hash,
        });
        at += FRAME_OVERHEAD + len;
    }
    out
}

/// Appends the frame of `body` (whose SHA-256 is `hash`) to `out`.
pub fn encode(body: &[u8], hash: &[u8; 32], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&hash[..4]);
}

/// The file name of the segment whose first record is `seq`.
pub fn file_name(seq: u64) -> String {
    format!("audit-{seq:020}.log")
}

/// The first sequence a segment file name claims, if it is one.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The segment files in `dir`, in chain order.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| AuditError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io(dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_cut_is_torn() {
        let mut file = MAGIC.to_vec();
        for body in [&b"{\"a\":1}"[..], b"{}", b"[1,2,3]"] {
            encode(body, &sha256(body), &mut file);
        }
        let whole = scan(&file);
        assert_eq!(whole.frames.len(), 3);
        assert!(whole.torn.is_none());
        let ends: Vec<usize> = whole
            .frames
            .iter()
            .map(|f| f.offset as usize + FRAME_OVERHEAD + f.body.len())
            .collect();
        for cut in 0..file.len() {
            let part = scan(&file[..cut]);
            let whole_frames = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(part.frames.len(), whole_frames, "cut at {cut}");
            assert_eq!(
                part.torn.is_none(),
                cut >= 8 && ends.contains(&cut) || cut == 8
            );
        }
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name("audit-1.log"), None);
    }
}
