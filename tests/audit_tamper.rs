//! Random tamperings of a signed audit log, each of which `verify` must
//! catch: a modified byte, a deleted, inserted or reordered record, a
//! removed segment, a truncation, and an edit followed by recomputing
//! every later hash (which only the checkpoint signatures can catch).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use proptest::prelude::*;
use sidewatch::audit::record::{Body, Record, sha256};
use sidewatch::audit::segment::{self, MAGIC};
use sidewatch::audit::{self, Entry, FsyncPolicy, Writer, WriterOptions};

/// Cases per kind: seven kinds × 240 = 1,680 tamperings (~50 s in debug).
const CASES: u32 = 240;

/// The pristine log: segment names and their frames' bytes.
struct Pristine {
    key: VerifyingKey,
    segments: Vec<(String, Vec<Vec<u8>>)>,
}

fn pristine() -> &'static Pristine {
    static LOG: OnceLock<Pristine> = OnceLock::new();
    LOG.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sw-tamper-base-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = SigningKey::from_bytes(&[7; 32]);
        let writer = Writer::open(WriterOptions {
            dir: dir.clone(),
            key: key.clone(),
            checkpoint_every: 10,
            checkpoint_interval: Duration::from_secs(60),
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            segment_size: 1500,
            queue: 1000,
        })
        .unwrap();
        for i in 0..40 {
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
                    frames,
                )
            })
            .collect::<Vec<_>>();
        assert!(segments.len() >= 3, "need several segments");
        let _ = std::fs::remove_dir_all(&dir);
        let log = Pristine {
            key: key.verifying_key(),
            segments,
        };
        // The untouched log must pass, or every catch below means nothing.
        let dir = write(&log.segments, "pristine");
        audit::verify(&dir, &log.key).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        log
    })
}

fn files(segments: &[(String, Vec<Vec<u8>>)]) -> Vec<(String, Vec<u8>)> {
    segments
        .iter()
        .map(|(name, frames)| {
            let mut bytes = MAGIC.to_vec();
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

fn write(segments: &[(String, Vec<Vec<u8>>)], tag: &str) -> PathBuf {
    write_files(&files(segments), tag)
}

fn caught(dir: &Path) -> Result<(), TestCaseError> {
    let result = audit::verify(dir, &pristine().key);
    let _ = std::fs::remove_dir_all(dir);
    prop_assert!(result.is_err(), "tampering not caught: {result:?}");
    Ok(())
}

/// (segment, frame) of the `n`th frame overall, wrapping.
fn locate(segments: &[(String, Vec<Vec<u8>>)], n: usize) -> (usize, usize) {
    let total: usize = segments.iter().map(|s| s.1.len()).sum();
    let mut n = n % total;
    for (i, (_, frames)) in segments.iter().enumerate() {
        if n < frames.len() {
            return (i, n);
        }
        n -= frames.len();
    }
    unreachable!()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn modified_byte(seg in any::<usize>(), at in any::<usize>(), xor in 1u8..=255) {
        let mut files = files(&pristine().segments);
        let s = seg % files.len();
        let len = files[s].1.len();
        files[s].1[at % len] ^= xor;
        caught(&write_files(&files, "byte"))?;
    }

    #[test]
    fn deleted_record(n in any::<usize>()) {
        let mut segments = pristine().segments.clone();
        let (s, f) = locate(&segments, n);
        segments[s].1.remove(f);
        caught(&write(&segments, "delete"))?;
    }

    #[test]
    fn inserted_record(from in any::<usize>(), to in any::<usize>(), pos in any::<usize>()) {
        let mut segments = pristine().segments.clone();
        let (s, f) = locate(&segments, from);
        let frame = segments[s].1[f].clone();
        let t = to % segments.len();
        let at = pos % (segments[t].1.len() + 1);
        segments[t].1.insert(at, frame);
        caught(&write(&segments, "insert"))?;
    }

    #[test]
    fn reordered_records(a in any::<usize>(), b in any::<usize>()) {
        let mut segments = pristine().segments.clone();
        let (sa, fa) = locate(&segments, a);
        let (sb, fb) = locate(&segments, b);
        prop_assume!((sa, fa) != (sb, fb));
        let x = segments[sa].1[fa].clone();
        let y = std::mem::replace(&mut segments[sb].1[fb], x);
        segments[sa].1[fa] = y;
        caught(&write(&segments, "reorder"))?;
    }

    #[test]
    fn removed_segment(n in any::<usize>()) {
        let mut segments = pristine().segments.clone();
        let n = n % segments.len();
        segments.remove(n);
        caught(&write(&segments, "remove"))?;
    }

    #[test]
    fn truncated(keep in any::<usize>()) {
        let mut files = files(&pristine().segments);
        let last = files.len() - 1;
        let len = files[last].1.len();
        files[last].1.truncate(keep % len);
        caught(&write_files(&files, "truncate"))?;
    }

    #[test]
    fn edit_with_recomputed_hashes(n in any::<usize>(), status in any::<u16>()) {
        let mut segments = pristine().segments.clone();
        let (s, f) = locate(&segments, n);
        let mut record = Record::parse(&segments[s].1[f][4..segments[s].1[f].len() - 4]).unwrap();
        match &mut record.body {
            Body::Entry(e) => { prop_assume!(e.status != status); e.status = status; }
            // Flip a checkpoint's closing flag instead.
            Body::Checkpoint(c) => c.closing = !c.closing,
            Body::Recovery(r) => r.bytes_cut += 1,
        }
        // Re-encode this record and re-link every later one, as an
        // attacker without the signing key would.
        let mut head: Option<[u8; 32]> = None;
        for (si, (_, frames)) in segments.iter_mut().enumerate() {
            for (fi, frame) in frames.iter_mut().enumerate() {
                if (si, fi) < (s, f) {
                    continue;
                }
                let mut r = if (si, fi) == (s, f) {
                    record.clone()
                } else {
                    Record::parse(&frame[4..frame.len() - 4]).unwrap()
                };
                if let Some(h) = head {
                    r.prev = hex::encode(h);
                }
                let body = r.canonical();
                let hash = sha256(&body);
                frame.clear();
                segment::encode(&body, &hash, frame);
                head = Some(hash);
            }
        }
        caught(&write(&segments, "recompute"))?;
    }
}
