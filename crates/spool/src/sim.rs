//! A simulated disk for tests: it keeps, for every file, what was written and
//! what was fsynced, and for the directory, what its last fsync made durable.
//! A [`SimDisk::crash`] builds the disk a power loss would leave: only durable
//! names survive, with their durable bytes plus a torn piece of what was
//! written after (a prefix, zeros, or garbage). Any operation can be made to
//! fail, and the disk can freeze after a number of operations (a crash in the
//! middle of a writer cycle).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{AppendFile, DirLock, ReadAt, Storage};

/// Operations that faults can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Write,
    Sync,
    SetLen,
    OpenAppend,
    Remove,
    Rename,
    SyncDir,
    Read,
}

#[derive(Clone, Debug)]
pub(crate) struct Fault {
    pub op: Op,
    /// Matching operations that succeed before the one that fails.
    pub skip: u32,
    pub kind: io::ErrorKind,
    /// For writes: how many bytes reach the file before the error. For
    /// fsyncs: how many of the unsynced bytes become durable anyway.
    pub partial: usize,
    /// Only files whose name contains this.
    pub name_contains: &'static str,
}

impl Fault {
    pub(crate) fn new(op: Op, kind: io::ErrorKind) -> Self {
        Fault {
            op,
            skip: 0,
            kind,
            partial: 0,
            name_contains: "",
        }
    }
}

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

type InodeRef = Arc<Mutex<Inode>>;

#[derive(Default)]
struct Disk {
    names: BTreeMap<String, InodeRef>,
    durable_names: BTreeMap<String, InodeRef>,
    locked: bool,
    frozen: bool,
    /// Mutating operations left before the disk freezes.
    freeze_in: Option<u64>,
    faults: Vec<Fault>,
}

#[derive(Clone)]
pub(crate) struct SimDisk {
    disk: Arc<Mutex<Disk>>,
    dir: PathBuf,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimDisk {
    pub(crate) fn new() -> Self {
        SimDisk {
            disk: Arc::default(),
            dir: PathBuf::from("/sim/spool"),
        }
    }

    pub(crate) fn inject(&self, fault: Fault) {
        lock(&self.disk).faults.push(fault);
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.disk).faults.clear();
    }

    /// Freezes the disk after `ops` more mutating operations: from then on
    /// every operation fails and changes nothing, as if the power went out.
    pub(crate) fn freeze_after(&self, ops: u64) {
        let mut disk = lock(&self.disk);
        if ops == 0 {
            disk.frozen = true;
        } else {
            disk.freeze_in = Some(ops);
        }
    }

    /// The disk a power loss now would leave behind. `seed` picks how much
    /// of each file's unsynced bytes made it, and in what shape.
    pub(crate) fn crash(&self, seed: u64) -> SimDisk {
        let mut disk = lock(&self.disk);
        disk.frozen = true;
        let mut rng = SplitMix(seed);
        let mut after = Disk::default();
        for (name, inode) in &disk.durable_names {
            let inode = lock(inode);
            let content = torn(&inode.data, &inode.durable, &mut rng);
            after.names.insert(
                name.clone(),
                Arc::new(Mutex::new(Inode {
                    data: content.clone(),
                    durable: content,
                })),
            );
        }
        after.durable_names = after.names.clone();
        SimDisk {
            disk: Arc::new(Mutex::new(after)),
            dir: self.dir.clone(),
        }
    }

    /// Names in the directory now.
    pub(crate) fn names(&self) -> Vec<String> {
        lock(&self.disk).names.keys().cloned().collect()
    }

    /// The current content of a file.
    pub(crate) fn content(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.disk)
            .names
            .get(name)
            .map(|i| lock(i).data.clone())
    }

    /// Whether everything written to a file is fsynced.
    pub(crate) fn is_durable(&self, name: &str) -> bool {
        let disk = lock(&self.disk);
        disk.names.get(name).is_some_and(|inode| {
            let inode = lock(inode);
            inode.data == inode.durable
        })
    }

    /// Flips a byte of a file in place, durably (what bit rot would do);
    /// open handles see it.
    pub(crate) fn flip(&self, name: &str, offset: usize) {
        let disk = lock(&self.disk);
        let mut inode = lock(disk.names.get(name).expect("file exists"));
        inode.data[offset] ^= 0x40;
        inode.durable[offset] ^= 0x40;
    }

    /// Accounts for one operation: fails it if the disk is frozen or a fault
    /// matches; returns the fault's `partial` when one fires.
    fn begin(&self, op: Op, name: &str) -> Result<(), (io::Error, usize)> {
        let mut disk = lock(&self.disk);
        if disk.frozen {
            return Err((io::Error::other("simulated power loss"), 0));
        }
        if op != Op::Read
            && let Some(left) = disk.freeze_in.as_mut()
        {
            if *left == 0 {
                disk.frozen = true;
                disk.freeze_in = None;
                return Err((io::Error::other("simulated power loss"), 0));
            }
            *left -= 1;
        }
        let hit = disk.faults.iter_mut().position(|f| {
            f.op == op && name.contains(f.name_contains) && {
                if f.skip == 0 {
                    true
                } else {
                    f.skip -= 1;
                    false
                }
            }
        });
        if let Some(at) = hit {
            let fault = disk.faults.remove(at);
            return Err((io::Error::from(fault.kind), fault.partial));
        }
        Ok(())
    }
}

fn torn(data: &[u8], durable: &[u8], rng: &mut SplitMix) -> Vec<u8> {
    if data.len() > durable.len() && data.starts_with(durable) {
        let extra = &data[durable.len()..];
        let keep = (rng.next() % (extra.len() as u64 + 1)) as usize;
        let mut content = durable.to_vec();
        content.extend_from_slice(&extra[..keep]);
        // Blocks allocated but not written read back as zeros or junk.
        let junk = (rng.next() % 64) as usize;
        match rng.next() % 3 {
            0 => {}
            1 => content.extend(std::iter::repeat_n(0u8, junk)),
            _ => content.extend((0..junk).map(|_| rng.next() as u8)),
        }
        content
    } else if data != durable && rng.next().is_multiple_of(2) {
        data.to_vec()
    } else {
        durable.to_vec()
    }
}

/// A tiny deterministic generator (splitmix64).
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct SimLock(Arc<Mutex<Disk>>);

impl Drop for SimLock {
    fn drop(&mut self) {
        lock(&self.0).locked = false;
    }
}

impl Storage for SimDisk {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> io::Result<DirLock> {
        let mut disk = lock(&self.disk);
        if disk.frozen {
            return Err(io::Error::other("simulated power loss"));
        }
        if disk.locked {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        disk.locked = true;
        Ok(Box::new(SimLock(self.disk.clone())))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        self.begin(Op::Read, "").map_err(|(e, _)| e)?;
        Ok(self.names())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.begin(Op::Read, name).map_err(|(e, _)| e)?;
        self.content(name)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
        self.begin(Op::OpenAppend, name).map_err(|(e, _)| e)?;
        let inode = lock(&self.disk)
            .names
            .entry(name.to_string())
            .or_default()
            .clone();
        Ok(Box::new(SimFile {
            disk: self.clone(),
            name: name.to_string(),
            inode,
        }))
    }

    fn open_read(&self, name: &str) -> io::Result<Arc<dyn ReadAt>> {
        self.begin(Op::Read, name).map_err(|(e, _)| e)?;
        let inode = lock(&self.disk)
            .names
            .get(name)
            .cloned()
            .ok_or(io::ErrorKind::NotFound)?;
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            name: name.to_string(),
            inode,
        }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.begin(Op::Remove, name).map_err(|(e, _)| e)?;
        match lock(&self.disk).names.remove(name) {
            Some(_) => Ok(()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.begin(Op::Rename, from).map_err(|(e, _)| e)?;
        let mut disk = lock(&self.disk);
        let inode = disk.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        disk.names.insert(to.to_string(), inode);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.begin(Op::SyncDir, "").map_err(|(e, _)| e)?;
        let mut disk = lock(&self.disk);
        disk.durable_names = disk.names.clone();
        Ok(())
    }
}

struct SimFile {
    disk: SimDisk,
    name: String,
    inode: InodeRef,
}

impl AppendFile for SimFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.disk.begin(Op::Write, &self.name) {
            Ok(()) => {
                lock(&self.inode).data.extend_from_slice(buf);
                Ok(())
            }
            Err((e, partial)) => {
                lock(&self.inode)
                    .data
                    .extend_from_slice(&buf[..partial.min(buf.len())]);
                Err(e)
            }
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        // Lock order is disk then inode (as in `crash`): begin() first.
        let began = self.disk.begin(Op::Sync, &self.name);
        let mut inode = lock(&self.inode);
        match began {
            Ok(()) => {
                inode.durable = inode.data.clone();
                Ok(())
            }
            Err((e, partial)) => {
                // Some of the unsynced bytes may have reached the disk anyway.
                if inode.data.starts_with(&inode.durable) {
                    let keep = inode
                        .durable
                        .len()
                        .saturating_add(partial)
                        .min(inode.data.len());
                    inode.durable = inode.data[..keep].to_vec();
                }
                Err(e)
            }
        }
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.disk
            .begin(Op::SetLen, &self.name)
            .map_err(|(e, _)| e)?;
        lock(&self.inode).data.resize(len as usize, 0);
        Ok(())
    }
}

impl ReadAt for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.disk.begin(Op::Read, &self.name).map_err(|(e, _)| e)?;
        let inode = lock(&self.inode);
        let start = offset as usize;
        let src = inode
            .data
            .get(start..start + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}
