//! Encryption at rest: what is stored is sealed, `audit verify` and
//! `audit query` read it only with the key whose id the segments name, an
//! altered envelope is reported at its segment and sequence, and a log
//! that changed keys (or turned encryption on) reads with every key.

mod audit_support;

use audit_support::{
    TempDir, cli, encryption_key, json_lines, keygen, options, public_key, segments, write,
};
use sidewatch::audit::record::sha256;
use sidewatch::audit::segment::{self, Header};
use sidewatch::audit::{self, Filter, WriterOptions};

fn encrypted(dir: &std::path::Path, key: audit::EncryptionKey) -> WriterOptions {
    WriterOptions {
        encryption: Some(key),
        ..options(dir)
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_encrypted_log_reads_only_with_its_key() {
    let root = TempDir::new("enc-cli");
    keygen(&root.join("keys"), &["--encryption"]);
    let key = audit::load_encryption_key(&root.join("keys/audit.enc")).unwrap();
    let id = key.id_hex();
    let log = root.join("log");
    write(
        WriterOptions {
            key: audit::load_signing_key(&root.join("keys/audit.key")).unwrap(),
            ..encrypted(&log, key)
        },
        0..100,
    );

    for (_, path) in segments(&log) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"SWAUDIX1"));
        assert_eq!(
            hex::encode(&bytes[8..16]),
            id,
            "the key id follows the magic"
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("req-") && !text.contains("iris") && !text.contains("checkpoint"),
            "plaintext at rest in {path:?}"
        );
    }

    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", "log", "--pubkey", "keys/audit.pub"];
        args.extend_from_slice(extra);
        cli(&args, &root.0)
    };
    let out = verify(&["--key", "keys/audit.enc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("100 entries"));

    let out = verify(&[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("encrypted with key id {id}: pass --key FILE")),
        "{}",
        stderr(&out)
    );

    keygen(&root.join("other"), &["--encryption"]);
    let other = audit::load_encryption_key(&root.join("other/audit.enc")).unwrap();
    let out = verify(&["--key", "other/audit.enc"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "encrypted with key id {id}, but the key given has id {}",
            other.id_hex()
        )),
        "{}",
        stderr(&out)
    );

    let query = |extra: &[&str]| {
        let mut args = vec!["audit", "query", "log", "--model", "iris", "--flagged"];
        args.extend_from_slice(extra);
        cli(&args, &root.0)
    };
    let out = query(&["--key", "keys/audit.enc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 10, "req-0, req-10, …, req-90");
    assert!(lines.iter().all(|l| l["body"]["entry"]["model"] == "iris"));
    let out = query(&[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("key id {id}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_altered_envelope_is_reported_at_its_segment_and_sequence() {
    let root = TempDir::new("enc-alter");
    let log = root.join("log");
    let key = encryption_key(9);
    write(encrypted(&log, key.clone()), 0..60);
    let files = segments(&log);
    let (first, path) = &files[1];
    let bytes = std::fs::read(path).unwrap();
    let scan = segment::scan(&bytes);
    let frame = &scan.frames[2];
    // Flip a ciphertext byte and fix the frame check, so that only the
    // authentication tag can tell.
    let mut body = frame.body.clone();
    body[30] ^= 1;
    let mut altered = bytes[..frame.offset as usize].to_vec();
    segment::encode(&body, &sha256(&body), &mut altered);
    altered.extend_from_slice(&bytes[frame.offset as usize + 8 + body.len()..]);
    std::fs::write(path, &altered).unwrap();
    let error = audit::verify(&log, &public_key(), std::slice::from_ref(&key)).unwrap_err();
    assert_eq!(error.segment, path.file_name().unwrap().to_string_lossy());
    assert_eq!(error.seq, Some(first + 2));
    assert!(error.reason.contains("decryption failed"), "{error}");

    // A header naming another key: verify says which key it would need.
    let mut renamed = bytes.clone();
    renamed[8..16].copy_from_slice(&encryption_key(3).id());
    std::fs::write(path, &renamed).unwrap();
    let error = audit::verify(&log, &public_key(), &[key]).unwrap_err();
    assert_eq!(error.seq, Some(*first));
    assert!(
        error.reason.contains(&encryption_key(3).id_hex()),
        "{error}"
    );
}

#[test]
fn a_log_that_turned_encryption_on_and_changed_keys_reads_with_every_key() {
    let root = TempDir::new("enc-rotate");
    let log = root.join("log");
    let (a, b) = (encryption_key(1), encryption_key(2));
    write(options(&log), 0..50);
    write(encrypted(&log, a.clone()), 50..100);
    write(encrypted(&log, b.clone()), 100..150);
    // A torn tail in a segment sealed with b, cut by a writer holding b.
    let (_, last) = segments(&log).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&last, &bytes).unwrap();
    write(encrypted(&log, b.clone()), 150..160);

    let headers: Vec<Header> = segments(&log)
        .iter()
        .map(|(_, p)| Header::parse(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    assert_eq!(headers[0], Header::Plain);
    assert!(headers.contains(&Header::Encrypted(a.id())));
    assert_eq!(headers.last(), Some(&Header::Encrypted(b.id())));

    let summary = audit::verify(&log, &public_key(), &[a.clone(), b.clone()]).unwrap();
    assert_eq!(summary.entries, 160);
    assert_eq!(summary.recoveries, 1);
    let error = audit::verify(&log, &public_key(), std::slice::from_ref(&a)).unwrap_err();
    assert!(error.reason.contains(&b.id_hex()), "{error}");
    let mut out = Vec::new();
    let filter = Filter {
        request_id: Some("req-155".into()),
        ..Filter::default()
    };
    assert_eq!(audit::query(&log, &filter, &[a, b], &mut out).unwrap(), 1);
}

#[test]
fn encryption_and_retention_together() {
    let root = TempDir::new("enc-keep");
    let log = root.join("log");
    let key = encryption_key(5);
    let options = WriterOptions {
        retention: audit::Retention {
            max_age: None,
            max_segments: Some(2),
        },
        ..encrypted(&log, key.clone())
    };
    write(options, 0..200);
    assert_eq!(segments(&log).len(), 2);
    let summary = audit::verify(&log, &public_key(), &[key]).unwrap();
    assert!(summary.pruned_before > 0);
}

#[test]
fn the_config_section_turns_on_encryption_and_retention() {
    let root = TempDir::new("enc-config");
    keygen(&root.join("keys"), &["--encryption"]);
    let log = root.join("log");
    let yaml = format!(
        "upstream: http://127.0.0.1:8080\n\
         audit:\n  dir: {}\n  signing_key: {}\n  encryption_key: {}\n  segment_size: 4KiB\n  \
         fsync: always\n  retention: {{ max_segments: 2, max_age: 30d }}\n",
        log.display(),
        root.join("keys/audit.key").display(),
        root.join("keys/audit.enc").display(),
    );
    let config = sidewatch::Config::from_yaml(&yaml, &Default::default()).unwrap();
    let options = WriterOptions::from_config(config.audit.as_ref().unwrap()).unwrap();
    let key = audit::load_encryption_key(&root.join("keys/audit.enc")).unwrap();
    assert_eq!(options.encryption.as_ref().map(|k| k.id()), Some(key.id()));
    assert_eq!(options.retention.max_segments, Some(2));
    write(options, 0..200);
    assert_eq!(segments(&log).len(), 2);
    let public = audit::load_verifying_key(&root.join("keys/audit.pub")).unwrap();
    let summary = audit::verify(&log, &public, &[key]).unwrap();
    assert!(summary.pruned_before > 0, "{summary:?}");
}

#[test]
fn an_encrypted_log_killed_right_after_rotating_records_the_unclean_stop() {
    let root = TempDir::new("enc-unclean");
    let live = root.join("live");
    let key = encryption_key(7);
    let options = |dir: &std::path::Path| WriterOptions {
        encryption: Some(encryption_key(7)),
        ..options(dir)
    };
    let writer = audit::Writer::open(options(&live)).unwrap();
    for i in 0..40 {
        assert!(writer.submit(audit_support::entry(i)));
    }
    let stats = writer.stats();
    audit_support::wait_for("the entries are durable", || {
        stats.durable() >= 40 && stats.durable() == stats.records_total()
    });
    // The files as a SIGKILL would leave them: no closing checkpoint ...
    let crashed = root.join("crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    for (_, path) in segments(&live) {
        std::fs::copy(&path, crashed.join(path.file_name().unwrap())).unwrap();
    }
    writer.close();
    // ... and the next segment just created, header only.
    let records = audit::verify_live(&crashed, &public_key(), std::slice::from_ref(&key))
        .unwrap()
        .records;
    std::fs::write(
        crashed.join(segment::file_name(records)),
        Header::Encrypted(key.id()).bytes(),
    )
    .unwrap();

    audit::Writer::open(options(&crashed)).unwrap().close();
    let summary = audit::verify(&crashed, &public_key(), &[key]).unwrap();
    assert_eq!(summary.unclean_stops, 1, "{summary}");
}
