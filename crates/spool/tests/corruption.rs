//! Damaged spool files on a real file system: flipped bytes, truncated
//! files, garbage tails, a damaged acknowledgement log. Damage never stops
//! recovery from reading the rest, never yields wrong data, and is counted.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{
    ENTRY_HEADER, SEGMENT_HEADER, config, entry, frame_offsets, read_all, segment_files, tag, tags,
};
use proptest::prelude::*;
use warden_spool::{EntryId, FullPolicy, Recovery, Spool, SpoolConfig};

/// Entries of 108 data bytes (136 on disk), three per segment.
fn cfg(dir: &Path) -> SpoolConfig {
    config(dir, 1 << 20, 420, FullPolicy::Backpressure)
}

/// A closed spool holding entries tagged 1..=12 in four segment files of
/// three entries each.
async fn twelve_entries(dir: &Path) {
    let (spool, _) = Spool::open(cfg(dir)).await.unwrap();
    for tag in 1..=12 {
        spool
            .append(vec![entry(tag, tag as u32, 100)])
            .await
            .unwrap();
    }
    spool.close().await;
    let segments = segment_files(dir);
    assert_eq!(segments.len(), 4, "{segments:?}");
    for segment in &segments {
        assert_eq!(frame_offsets(&fs::read(segment).unwrap()).len(), 3);
    }
}

async fn reopen(dir: &Path) -> (Spool, Recovery, Vec<u64>) {
    let (spool, recovery) = Spool::open(cfg(dir)).await.unwrap();
    let tags = tags(&read_all(&spool).await);
    (spool, recovery, tags)
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    change(&mut bytes);
    fs::write(path, bytes).unwrap();
}

fn all_but(missing: &[u64]) -> Vec<u64> {
    (1..=12).filter(|t| !missing.contains(t)).collect()
}

#[tokio::test]
async fn a_flipped_data_byte_in_the_middle_skips_that_entry_only() {
    let dir = tempfile::tempdir().unwrap();
    twelve_entries(dir.path()).await;
    let second = &segment_files(dir.path())[1];
    let middle = frame_offsets(&fs::read(second).unwrap())[1];
    edit(second, |b| b[middle + ENTRY_HEADER + 50] ^= 0x01);

    let (spool, recovery, got) = reopen(dir.path()).await;
    assert_eq!(got, all_but(&[5]));
    assert_eq!((recovery.corrupt_entries, recovery.truncated_bytes), (1, 0));
    assert_eq!(recovery.entries, 11);
    assert_eq!(spool.stats().corrupt_entries, 1);
    spool.close().await;

    let (_spool, recovery, got) = reopen(dir.path()).await;
    assert_eq!(got, all_but(&[5]));
    assert_eq!(recovery.corrupt_entries, 0, "damage is counted once");
}

#[tokio::test]
async fn a_flipped_length_or_magic_byte_does_not_hide_the_entries_after_it() {
    for field in [0, 1, 21, 22, 9] {
        let dir = tempfile::tempdir().unwrap();
        twelve_entries(dir.path()).await;
        let second = &segment_files(dir.path())[1];
        let first = frame_offsets(&fs::read(second).unwrap())[0];
        edit(second, |b| b[first + field] ^= 0x80);
        let (_spool, recovery, got) = reopen(dir.path()).await;
        assert_eq!(got, all_but(&[4]), "header byte {field}");
        assert_eq!(recovery.corrupt_entries, 1, "header byte {field}");
    }
}

#[tokio::test]
async fn a_damaged_last_entry_of_an_older_segment_is_counted_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    twelve_entries(dir.path()).await;
    let second = &segment_files(dir.path())[1];
    let last = frame_offsets(&fs::read(second).unwrap())[2];
    edit(second, |b| b[last + ENTRY_HEADER + 3] ^= 0x10);
    let (_spool, recovery, got) = reopen(dir.path()).await;
    assert_eq!(got, all_but(&[6]));
    assert_eq!(recovery.corrupt_entries, 1);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_its_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    twelve_entries(dir.path()).await;
    let last_file = segment_files(dir.path())[3].clone();
    let last = frame_offsets(&fs::read(&last_file).unwrap())[2];
    let len = fs::metadata(&last_file).unwrap().len();
    edit(&last_file, |b| b.truncate(last + 60));

    let (spool, recovery, got) = reopen(dir.path()).await;
    assert_eq!(got, all_but(&[12]));
    assert_eq!(recovery.truncated_bytes, 60);
    assert_eq!(recovery.corrupt_entries, 0, "a torn tail is not corruption");
    assert!(fs::metadata(&last_file).unwrap().len() < len);
    let next = spool.append(vec![entry(13, 1, 1)]).await.unwrap();
    assert!(
        next.ids[0] > EntryId(12),
        "the id of the torn entry is not handed out again"
    );
}

#[tokio::test]
async fn garbage_after_the_last_entry_is_cut() {
    for garbage in [
        vec![0u8; 500],
        (0..77u8).map(|i| i.wrapping_mul(37)).collect(),
        b"WSE1".repeat(20),
    ] {
        let dir = tempfile::tempdir().unwrap();
        twelve_entries(dir.path()).await;
        let files = segment_files(dir.path());
        // On the newest segment (a torn write) and on an older one.
        for file in [&files[3], &files[0]] {
            edit(file, |b| b.extend_from_slice(&garbage));
        }
        let (spool, recovery, got) = reopen(dir.path()).await;
        assert_eq!(got, all_but(&[]));
        assert_eq!(recovery.truncated_bytes, 2 * garbage.len() as u64);
        assert_eq!(recovery.corrupt_entries, 0);
        spool.close().await;
        let (_spool, recovery, _) = reopen(dir.path()).await;
        assert_eq!(recovery.truncated_bytes, 0, "cut once");
    }
}

#[tokio::test]
async fn a_damaged_segment_header_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    twelve_entries(dir.path()).await;
    let second = &segment_files(dir.path())[1];
    edit(second, |b| b[..SEGMENT_HEADER].fill(0xff));
    let (_spool, recovery, got) = reopen(dir.path()).await;
    assert_eq!(got, all_but(&[]));
    assert_eq!(recovery.corrupt_entries, 0);
}

#[tokio::test]
async fn entries_missing_from_an_older_segment_are_counted_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    twelve_entries(dir.path()).await;
    let third = &segment_files(dir.path())[2];
    edit(third, |b| b.truncate(SEGMENT_HEADER + 10));
    let (_spool, recovery, got) = reopen(dir.path()).await;
    assert_eq!(got, all_but(&[7, 8, 9]));
    assert_eq!(recovery.corrupt_entries, 3, "counted from the missing ids");
    assert_eq!(recovery.truncated_bytes, 10);

    let dir = tempfile::tempdir().unwrap();
    twelve_entries(dir.path()).await;
    let third = &segment_files(dir.path())[2];
    let keep = frame_offsets(&fs::read(third).unwrap())[1];
    edit(third, |b| {
        let len = b.len();
        b[keep..len].fill(0);
    });
    let (_spool, recovery, got) = reopen(dir.path()).await;
    assert_eq!(got, all_but(&[8, 9]));
    assert_eq!(recovery.corrupt_entries, 2);
}

#[tokio::test]
async fn a_damaged_acknowledgement_log_only_brings_entries_back() {
    // The log holds two records, for ids 1..3 and 4..5.
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage, &[u64]); 3] = [
        ("flipped byte in the first record", |b| b[10] ^= 1, &[4]),
        ("torn last record", |b| b.truncate(b.len() - 5), &[1, 2]),
        (
            "garbage after the records",
            |b| b.extend_from_slice(&[7; 30]),
            &[1, 2, 4],
        ),
    ];
    for (damage, change, still_acked) in cases {
        let dir = tempfile::tempdir().unwrap();
        twelve_entries(dir.path()).await;
        let (spool, _) = Spool::open(cfg(dir.path())).await.unwrap();
        spool
            .ack(&[EntryId(1), EntryId(2), EntryId(4)])
            .await
            .unwrap();
        spool.close().await;
        let log = dir.path().join("acks.log");
        assert_eq!(fs::metadata(&log).unwrap().len(), 48);
        edit(&log, change);
        let (_spool, recovery, got) = reopen(dir.path()).await;
        assert_eq!(got, all_but(still_acked), "{damage}");
        assert_eq!(recovery.corrupt_entries, 0, "{damage}");
    }
}

#[tokio::test]
async fn other_files_in_the_directory_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    twelve_entries(dir.path()).await;
    fs::write(dir.path().join("notes.txt"), "keep me").unwrap();
    fs::write(dir.path().join("123.seg"), "not a segment name").unwrap();
    let (_spool, recovery, got) = reopen(dir.path()).await;
    assert_eq!(got, all_but(&[]));
    assert_eq!(recovery.corrupt_entries, 0);
    assert_eq!(
        fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "keep me"
    );
    assert!(dir.path().join("123.seg").exists());
}

/// The pristine twelve-entry spool, made once and copied for each case.
fn pristine() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(twelve_entries(dir.path()));
        dir
    })
    .path()
}

fn copy_of_pristine() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    for file in fs::read_dir(pristine()).unwrap() {
        let file = file.unwrap().path();
        fs::copy(&file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    let segments = segment_files(dir.path());
    (dir, segments)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens the damaged copy and checks that every entry it returns is one
/// that was written, exact, in order.
async fn recover_checked(dir: &Path) -> Result<(Recovery, Vec<u64>), TestCaseError> {
    let (spool, recovery) = Spool::open(cfg(dir))
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let entries = read_all(&spool).await;
    let mut previous = 0;
    for e in &entries {
        let t = tag(e);
        prop_assert!((1..=12).contains(&t));
        prop_assert_eq!(e.id, EntryId(t), "ids are the append order");
        prop_assert_eq!(&e.data, &entry(t, t as u32, 100).data);
        prop_assert_eq!(e.records, t as u32);
        prop_assert!(t > previous);
        previous = t;
    }
    spool.close().await;
    Ok((recovery, tags(&entries)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// One flipped byte anywhere costs at most the one entry it hit, and
    /// that loss is reported.
    #[test]
    fn a_flipped_byte_costs_at_most_one_entry(file in 0usize..4, at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (dir, segments) = copy_of_pristine();
        let path = &segments[file];
        let len = fs::metadata(path).unwrap().len() as usize;
        let offset = at.index(len);
        edit(path, |b| b[offset] ^= 1 << bit);
        let (recovery, got) = runtime().block_on(recover_checked(dir.path()))?;
        let missing = 12 - got.len() as u64;
        prop_assert!(missing <= 1, "one flipped byte lost {} entries", missing);
        prop_assert!(
            missing <= recovery.corrupt_entries + u64::from(recovery.truncated_bytes > 0),
            "a lost entry must be reported: {:?}", recovery
        );
    }

    /// A file cut anywhere keeps every entry before the cut and every entry
    /// of the other files.
    #[test]
    fn a_cut_file_keeps_what_precedes_the_cut(file in 0usize..4, at in any::<prop::sample::Index>()) {
        let (dir, segments) = copy_of_pristine();
        let path = &segments[file];
        let bytes = fs::read(path).unwrap();
        let cut = at.index(bytes.len() + 1);
        let offsets = frame_offsets(&bytes);
        let whole_before_cut = offsets.iter().filter(|&&o| o + ENTRY_HEADER + 108 <= cut).count() as u64;
        edit(path, |b| b.truncate(cut));
        let (_, got) = runtime().block_on(recover_checked(dir.path()))?;
        let first_tag = file as u64 * 3 + 1;
        let expected: Vec<u64> = (1..=12)
            .filter(|t| *t < first_tag || *t >= first_tag + 3 || *t < first_tag + whole_before_cut)
            .collect();
        prop_assert_eq!(got, expected);
    }
}
