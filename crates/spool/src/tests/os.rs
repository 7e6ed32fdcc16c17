//! Reads served from real segment files (no read cache), including damage
//! that appears while the spool is open.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{entry, ids, read_all};
use crate::storage::OsStorage;
use crate::{FullPolicy, Recovery, Spool, SpoolConfig, SpoolError};

async fn open_uncached(dir: &Path) -> Result<(Spool, Recovery), SpoolError> {
    let config = SpoolConfig {
        segment_bytes: 500,
        full_policy: FullPolicy::Backpressure,
        ..SpoolConfig::new(dir)
    };
    Spool::open_with(config, Arc::new(OsStorage::new(dir.to_path_buf())), 0).await
}

#[tokio::test]
async fn reads_come_from_the_segment_files_when_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open_uncached(dir.path()).await.unwrap();
    let mut appended = Vec::new();
    for tag in 0..20 {
        appended.extend(spool.append(vec![entry(tag, 3, 100)]).await.unwrap().ids);
    }
    let all = read_all(&spool).await;
    assert_eq!(ids(&all), appended);
    for (tag, e) in all.iter().enumerate() {
        assert_eq!(e.data, entry(tag as u64, 3, 100).data);
        assert_eq!(e.records, 3);
    }
    spool.ack(&appended[..10]).await.unwrap();
    spool.close().await;
    let (spool, recovery) = open_uncached(dir.path()).await.unwrap();
    assert_eq!(recovery.entries, 10);
    assert_eq!(ids(&read_all(&spool).await), appended[10..]);
}

#[tokio::test]
async fn damage_appearing_in_a_real_file_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open_uncached(dir.path()).await.unwrap();
    let a = spool
        .append(vec![entry(1, 1, 30), entry(2, 1, 30), entry(3, 1, 30)])
        .await
        .unwrap();
    let path = dir.path().join(crate::format::segment_name(a.ids[0].0));
    let second = crate::format::SEGMENT_HEADER_LEN + crate::format::frame_len(38) as usize;
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"X", (second + crate::format::ENTRY_HEADER_LEN + 5) as u64)
        .unwrap();

    let read = spool.read_after(None, 10, 1 << 20).await.unwrap();
    assert_eq!(ids(&read), [a.ids[0], a.ids[2]]);
    assert_eq!(spool.stats().corrupt_entries, 1);
    assert_eq!(spool.stats().entries, 2);
}

#[tokio::test]
async fn the_directory_and_every_file_are_private_whatever_existed() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    // As a umask of 022 or an older release leaves them.
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = dir.join("acks.log");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = SpoolConfig {
        max_bytes: 1 << 20,
        segment_bytes: 4096,
        full_policy: crate::FullPolicy::DropOldest,
        ..SpoolConfig::new(&dir)
    };
    let (spool, _) = Spool::open(config).await.unwrap();
    for i in 0..50 {
        spool.append(vec![entry(i, 1, 300)]).await.unwrap();
    }
    spool.close().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(names.len() >= 4, "{names:?}");
    for path in names {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}
