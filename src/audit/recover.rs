//! Opening a log to append to it: finding the chain head in the last
//! segment and cutting a torn tail (a frame cut short by a crash).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::AuditError;
use super::crypt::EncryptionKey;
use super::record::{Body, Record, Recovery, UncleanStop};
use super::segment::{self, FRAME_OVERHEAD, Header};

/// Where appending resumes.
#[derive(Debug)]
pub(crate) struct Tail {
    /// The sequence of the next record.
    pub next_seq: u64,
    /// The hash of the last record (zeros before the first).
    pub head: [u8; 32],
    /// The last segment, open for writing.
    pub path: PathBuf,
    /// Its file.
    pub file: File,
    /// Its length after any cut.
    pub len: u64,
    /// Whether its header differs from the writer's (another key, or
    /// encryption switched on or off): new records go to a new segment.
    pub foreign: bool,
    /// The cut made, to be recorded.
    pub recovery: Option<Recovery>,
    /// The previous run's last record, when it is not a closing checkpoint.
    pub unclean: Option<UncleanStop>,
}

/// Opens the last segment in `dir` (creating the first one if there is
/// none) for a writer whose segments have `header`; `key` opens them.
///
/// Frames are trusted by their check alone when the segment is in a
/// format the writer cannot read (another key): the hash chain needs only
/// the stored bytes, and sequences follow from the segment's name.
pub(crate) fn open_tail(
    dir: &Path,
    header: Header,
    key: Option<&EncryptionKey>,
) -> Result<Tail, AuditError> {
    let segments = segment::list(dir)?;
    let Some((first, path)) = segments.last() else {
        let (path, file, len) = create(dir, 0, header)?;
        return Ok(Tail {
            next_seq: 0,
            head: [0; 32],
            path,
            file,
            len,
            foreign: false,
            recovery: None,
            unclean: None,
        });
    };
    let first = *first;
    let bytes = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
    let scan = segment::scan(&bytes);
    let readable = match scan.header {
        Some(Header::Plain) => Some(None),
        Some(Header::Encrypted(id)) if key.is_some_and(|k| k.id() == id) => Some(key),
        _ => None,
    };
    let header_bytes = scan.header.map(|h| h.bytes()).unwrap_or_default();
    let mut good = 0u64;
    let mut head = [0u8; 32];
    let mut end = header_bytes.len() as u64;
    // Whether the last whole record closed the log (unknown when the
    // segment is in a format this writer cannot read).
    let mut closed: Option<bool> = None;
    for frame in &scan.frames {
        let seq = first + good;
        if let Some(key) = readable {
            // A frame that checks but does not parse is cut too.
            let plain = match key {
                Some(k) => k.open(&header_bytes, seq, &frame.body).ok(),
                None => Some(frame.body.clone()),
            };
            match plain.and_then(|p| Record::parse(&p).ok()) {
                Some(record) if record.seq == seq => {
                    closed = Some(matches!(record.body, Body::Checkpoint(ref c) if c.closing));
                }
                _ => break,
            }
        }
        head = frame.hash;
        end = frame.offset + (FRAME_OVERHEAD + frame.body.len()) as u64;
        good += 1;
    }
    if good == 0 && first > 0 {
        // Nothing readable here: the chain head is the previous segment's
        // last record.
        let prev = segments.len().checked_sub(2).and_then(|i| segments.get(i));
        let last = match prev {
            Some((prev_first, prev)) => {
                let bytes = std::fs::read(prev).map_err(|e| AuditError::io(prev, e))?;
                let scan = segment::scan(&bytes);
                // Whether its last record closed the log: a run killed
                // right after rotating leaves this case. Readable when
                // plain, or sealed with the writer's key.
                if let Some(frame) = scan.frames.last() {
                    let seq = prev_first + (scan.frames.len() as u64 - 1);
                    let plain = match scan.header {
                        Some(Header::Plain) => Some(frame.body.clone()),
                        Some(h @ Header::Encrypted(id)) => key
                            .filter(|k| k.id() == id)
                            .and_then(|k| k.open(&h.bytes(), seq, &frame.body).ok()),
                        None => None,
                    };
                    if let Some(record) = plain.and_then(|p| Record::parse(&p).ok()) {
                        closed = Some(matches!(record.body, Body::Checkpoint(ref c) if c.closing));
                    }
                }
                scan.frames.last().map(|f| f.hash)
            }
            None => None,
        };
        head = last.ok_or_else(|| AuditError::Key {
            path: path.clone(),
            reason: format!(
                "holds no whole record and no earlier segment holds the record before {first}: \
                 the chain cannot be continued"
            ),
        })?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io(path, e))?;
    let actual = bytes.len() as u64;
    let mut len = end;
    let mut foreign = scan.header != Some(header);
    if actual != end || good == 0 {
        if good == 0 {
            // Start the segment afresh in the writer's own format.
            file.set_len(0).map_err(|e| AuditError::io(path, e))?;
            (&file)
                .write_all(&header.bytes())
                .map_err(|e| AuditError::io(path, e))?;
            len = header.size() as u64;
            foreign = false;
        } else {
            file.set_len(end).map_err(|e| AuditError::io(path, e))?;
        }
        file.sync_all().map_err(|e| AuditError::io(path, e))?;
    }
    let recovery = (actual != end).then(|| Recovery {
        segment: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cut_at: end,
        bytes_cut: actual.saturating_sub(end),
    });
    let next_seq = first + good;
    let unclean = (closed == Some(false) && next_seq > 0).then(|| UncleanStop {
        last_seq: next_seq - 1,
        segment: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    });
    Ok(Tail {
        next_seq,
        head,
        path: path.clone(),
        file,
        len,
        foreign,
        recovery,
        unclean,
    })
}

/// Creates the segment whose first record is `seq`, header written and
/// synced along with its directory entry.
pub(crate) fn create(
    dir: &Path,
    seq: u64,
    header: Header,
) -> Result<(PathBuf, File, u64), AuditError> {
    let path = dir.join(segment::file_name(seq));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    file.write_all(&header.bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| AuditError::io(&path, e))?;
    sync_dir(dir);
    Ok((path, file, header.size() as u64))
}

/// Makes a directory's entries (created or removed files) durable; best
/// effort, as not every file system can.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
