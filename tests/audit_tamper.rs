//! Random tamperings of a signed audit log, each of which `verify` must
//! catch: a modified byte, a deleted, inserted or reordered record, a
//! removed segment, a truncation, and an edit followed by recomputing
//! every later hash (which only the checkpoint signatures can catch).
//!
//! Two logs are tampered with: a plaintext one, and one encrypted at rest
//! whose oldest segments were pruned under the retention policy. For the
//! second, the attacker also holds the encryption key (but not the signing
//! key): edits are re-sealed with the documented envelope, built here
//! with the AEAD crate directly rather than through sidewatch.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use proptest::prelude::*;
use sidewatch::audit::record::{Body, Record, sha256};
use sidewatch::audit::segment::{self, Header};
use sidewatch::audit::{self, EncryptionKey, Entry, FsyncPolicy, Retention, Writer, WriterOptions};

/// Cases per kind and log: seven kinds × 240 × two logs = 3,360
/// tamperings (~100 s in debug).
const CASES: u32 = 240;

/// The encryption key of the second log.
const SECRET: [u8; 32] = [9; 32];

/// One segment: its name, header and frames' bytes.
type Segment = (String, Vec<u8>, Vec<Vec<u8>>);

/// A pristine log.
struct Pristine {
    /// Part of every directory name, so both logs' cases run side by side.
    tag: &'static str,
    key: VerifyingKey,
    keys: Vec<EncryptionKey>,
    segments: Vec<Segment>,
}

fn build(encrypted: bool) -> Pristine {
    let tag = if encrypted { "enc" } else { "plain" };
    let dir = std::env::temp_dir().join(format!("sw-tamper-base-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = SigningKey::from_bytes(&[7; 32]);
    let keys: Vec<EncryptionKey> = if encrypted {
        vec![EncryptionKey::from_bytes(&SECRET)]
    } else {
        vec![]
    };
    let writer = Writer::open(WriterOptions {
        checkpoint_every: 10,
        checkpoint_interval: Duration::from_secs(60),
        fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
        segment_size: 1500,
        queue: 1000,
        encryption: keys.first().cloned(),
        retention: Retention {
            max_age: None,
            max_segments: encrypted.then_some(4),
        },
        ..WriterOptions::new(&dir, key.clone())
    })
    .unwrap();
    for i in 0..if encrypted { 60 } else { 40 } {
        writer.submit(Entry {
            request_id: format!("req-{i}"),
            client: "alice".into(),
            status: 200,
            latency_us: i,
            ..Entry::default()
        });
    }
    writer.close();
    let segments = segment::list(&dir)
        .unwrap()
        .into_iter()
        .map(|(_, path)| {
            let bytes = std::fs::read(&path).unwrap();
            let scan = segment::scan(&bytes);
            assert!(scan.torn.is_none());
            let frames = scan
                .frames
                .iter()
                .map(|f| {
                    let mut out = Vec::new();
                    segment::encode(&f.body, &f.hash, &mut out);
                    out
                })
                .collect();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                scan.header.unwrap().bytes(),
                frames,
            )
        })
        .collect::<Vec<_>>();
    assert!(segments.len() >= 3, "need several segments");
    let _ = std::fs::remove_dir_all(&dir);
    let log = Pristine {
        tag,
        key: key.verifying_key(),
        keys,
        segments,
    };
    // The untouched log must pass, or every catch below means nothing.
    let dir = write(&log.segments, &format!("pristine-{tag}"));
    let summary = audit::verify(&dir, &log.key, &log.keys).unwrap();
    assert_eq!(summary.pruned_before > 0, encrypted, "{summary:?}");
    let _ = std::fs::remove_dir_all(&dir);
    log
}

fn plain() -> &'static Pristine {
    static LOG: OnceLock<Pristine> = OnceLock::new();
    LOG.get_or_init(|| build(false))
}

fn sealed() -> &'static Pristine {
    static LOG: OnceLock<Pristine> = OnceLock::new();
    LOG.get_or_init(|| build(true))
}

fn files(segments: &[Segment]) -> Vec<(String, Vec<u8>)> {
    segments
        .iter()
        .map(|(name, header, frames)| {
            let mut bytes = header.clone();
            frames.iter().for_each(|f| bytes.extend_from_slice(f));
            (name.clone(), bytes)
        })
        .collect()
}

fn write_files(files: &[(String, Vec<u8>)], tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sw-tamper-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

fn write(segments: &[Segment], tag: &str) -> PathBuf {
    write_files(&files(segments), tag)
}

/// The directory tag of a tampering `kind` of `log`.
fn tag(log: &Pristine, kind: &str) -> String {
    format!("{kind}-{}", log.tag)
}

fn caught(log: &Pristine, dir: &Path) -> Result<(), TestCaseError> {
    let result = audit::verify(dir, &log.key, &log.keys);
    let _ = std::fs::remove_dir_all(dir);
    prop_assert!(result.is_err(), "tampering not caught: {result:?}");
    Ok(())
}

/// (segment, frame) of the `n`th frame overall, wrapping.
fn locate(segments: &[Segment], n: usize) -> (usize, usize) {
    let total: usize = segments.iter().map(|s| s.2.len()).sum();
    let mut n = n % total;
    for (i, (_, _, frames)) in segments.iter().enumerate() {
        if n < frames.len() {
            return (i, n);
        }
        n -= frames.len();
    }
    unreachable!()
}

/// The envelope's associated data: segment header, then the sequence.
fn aad(header: &[u8], seq: u64) -> Vec<u8> {
    [header, &seq.to_le_bytes()[..]].concat()
}

/// The plaintext of a stored body, as the attacker holding the
/// encryption key reads it.
fn open(header: &[u8], seq: u64, body: &[u8]) -> Vec<u8> {
    if Header::parse(header) == Some(Header::Plain) {
        return body.to_vec();
    }
    let cipher = XChaCha20Poly1305::new(&SECRET.into());
    let nonce = XNonce::try_from(&body[..24]).unwrap();
    let aad = aad(header, seq);
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &body[24..],
                aad: &aad,
            },
        )
        .unwrap()
}

/// A stored body for `plain`: sealed with a fresh nonce when encrypted.
fn seal(header: &[u8], seq: u64, plain: &[u8]) -> Vec<u8> {
    if Header::parse(header) == Some(Header::Plain) {
        return plain.to_vec();
    }
    let cipher = XChaCha20Poly1305::new(&SECRET.into());
    let nonce: [u8; 24] = std::array::from_fn(|i| (seq as u8).wrapping_add(i as u8) ^ 0x5a);
    let aad = aad(header, seq);
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .unwrap();
    [&nonce[..], &sealed].concat()
}

fn first_seq(name: &str) -> u64 {
    segment::parse_name(name).unwrap()
}

fn modified_byte(log: &Pristine, seg: usize, at: usize, xor: u8) -> Result<(), TestCaseError> {
    let mut files = files(&log.segments);
    let s = seg % files.len();
    let len = files[s].1.len();
    files[s].1[at % len] ^= xor;
    caught(log, &write_files(&files, &tag(log, "byte")))
}

fn deleted_record(log: &Pristine, n: usize) -> Result<(), TestCaseError> {
    let mut segments = log.segments.clone();
    let (s, f) = locate(&segments, n);
    segments[s].2.remove(f);
    caught(log, &write(&segments, &tag(log, "delete")))
}

fn inserted_record(
    log: &Pristine,
    from: usize,
    to: usize,
    pos: usize,
) -> Result<(), TestCaseError> {
    let mut segments = log.segments.clone();
    let (s, f) = locate(&segments, from);
    let frame = segments[s].2[f].clone();
    let t = to % segments.len();
    let at = pos % (segments[t].2.len() + 1);
    segments[t].2.insert(at, frame);
    caught(log, &write(&segments, &tag(log, "insert")))
}

fn reordered_records(log: &Pristine, a: usize, b: usize) -> Result<(), TestCaseError> {
    let mut segments = log.segments.clone();
    let (sa, fa) = locate(&segments, a);
    let (sb, fb) = locate(&segments, b);
    prop_assume!((sa, fa) != (sb, fb));
    let x = segments[sa].2[fa].clone();
    let y = std::mem::replace(&mut segments[sb].2[fb], x);
    segments[sa].2[fa] = y;
    caught(log, &write(&segments, &tag(log, "reorder")))
}

fn removed_segment(log: &Pristine, n: usize) -> Result<(), TestCaseError> {
    let mut segments = log.segments.clone();
    let n = n % segments.len();
    segments.remove(n);
    caught(log, &write(&segments, &tag(log, "remove")))
}

fn truncated(log: &Pristine, keep: usize) -> Result<(), TestCaseError> {
    let mut files = files(&log.segments);
    let last = files.len() - 1;
    let len = files[last].1.len();
    files[last].1.truncate(keep % len);
    caught(log, &write_files(&files, &tag(log, "truncate")))
}

fn edit_with_recomputed_hashes(log: &Pristine, n: usize, status: u16) -> Result<(), TestCaseError> {
    let mut segments = log.segments.clone();
    let (s, f) = locate(&segments, n);
    let body = |frame: &[u8]| frame[4..frame.len() - 4].to_vec();
    let (name, header, frames) = &segments[s];
    let seq = first_seq(name) + f as u64;
    let mut record = Record::parse(&open(header, seq, &body(&frames[f]))).unwrap();
    match &mut record.body {
        Body::Entry(e) => {
            prop_assume!(e.status != status);
            e.status = status;
        }
        // Flip a checkpoint's closing flag instead.
        Body::Checkpoint(c) => c.closing = !c.closing,
        Body::Recovery(r) => r.bytes_cut += 1,
        Body::Prune(p) => p.first_seq += 1,
        Body::UncleanStop(u) => u.last_seq += 1,
    }
    // Re-seal this record and re-link every later one, as an attacker
    // without the signing key would.
    let mut head: Option<[u8; 32]> = None;
    for (si, (name, header, frames)) in segments.iter_mut().enumerate() {
        let first = first_seq(name);
        for (fi, frame) in frames.iter_mut().enumerate() {
            if (si, fi) < (s, f) {
                continue;
            }
            let seq = first + fi as u64;
            let mut r = if (si, fi) == (s, f) {
                record.clone()
            } else {
                Record::parse(&open(header, seq, &body(frame))).unwrap()
            };
            if let Some(h) = head {
                r.prev = hex::encode(h);
            }
            let stored = seal(header, seq, &r.canonical());
            let hash = sha256(&stored);
            frame.clear();
            segment::encode(&stored, &hash, frame);
            head = Some(hash);
        }
    }
    caught(log, &write(&segments, &tag(log, "recompute")))
}

#[test]
fn the_documented_envelope_round_trips() {
    let log = sealed();
    for (name, header, frames) in &log.segments {
        for (i, frame) in frames.iter().enumerate() {
            let seq = first_seq(name) + i as u64;
            let body = &frame[4..frame.len() - 4];
            let record = Record::parse(&open(header, seq, body)).unwrap();
            assert_eq!(record.seq, seq);
            let again = seal(header, seq, &record.canonical());
            assert_eq!(open(header, seq, &again), record.canonical());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn plain_modified_byte(seg in any::<usize>(), at in any::<usize>(), xor in 1u8..=255) {
        modified_byte(plain(), seg, at, xor)?;
    }

    #[test]
    fn plain_deleted_record(n in any::<usize>()) {
        deleted_record(plain(), n)?;
    }

    #[test]
    fn plain_inserted_record(from in any::<usize>(), to in any::<usize>(), pos in any::<usize>()) {
        inserted_record(plain(), from, to, pos)?;
    }

    #[test]
    fn plain_reordered_records(a in any::<usize>(), b in any::<usize>()) {
        reordered_records(plain(), a, b)?;
    }

    #[test]
    fn plain_removed_segment(n in any::<usize>()) {
        removed_segment(plain(), n)?;
    }

    #[test]
    fn plain_truncated(keep in any::<usize>()) {
        truncated(plain(), keep)?;
    }

    #[test]
    fn plain_edit_with_recomputed_hashes(n in any::<usize>(), status in any::<u16>()) {
        edit_with_recomputed_hashes(plain(), n, status)?;
    }

    #[test]
    fn sealed_modified_byte(seg in any::<usize>(), at in any::<usize>(), xor in 1u8..=255) {
        modified_byte(sealed(), seg, at, xor)?;
    }

    #[test]
    fn sealed_deleted_record(n in any::<usize>()) {
        deleted_record(sealed(), n)?;
    }

    #[test]
    fn sealed_inserted_record(from in any::<usize>(), to in any::<usize>(), pos in any::<usize>()) {
        inserted_record(sealed(), from, to, pos)?;
    }

    #[test]
    fn sealed_reordered_records(a in any::<usize>(), b in any::<usize>()) {
        reordered_records(sealed(), a, b)?;
    }

    #[test]
    fn sealed_removed_segment(n in any::<usize>()) {
        removed_segment(sealed(), n)?;
    }

    #[test]
    fn sealed_truncated(keep in any::<usize>()) {
        truncated(sealed(), keep)?;
    }

    #[test]
    fn sealed_edit_with_recomputed_hashes(n in any::<usize>(), status in any::<u16>()) {
        edit_with_recomputed_hashes(sealed(), n, status)?;
    }
}
