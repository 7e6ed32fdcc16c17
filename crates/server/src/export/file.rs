//! An append-only file of lines with size-based rotation: the OCSF sink's
//! output. A batch is written and synced before the exporter saves its
//! cursor, so a crash repeats lines at worst and never loses one.
//!
//! When the next line would take the file past `max_bytes`, the file is
//! synced and renamed `FILE.1` (what was `FILE.1` becomes `FILE.2`, and so
//! on up to `keep` old files; the oldest goes) and a new `FILE` is started.
//! A single line longer than `max_bytes` gets a file of its own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The default size at which the file is rotated: 100 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 << 20;
/// The default number of rotated files kept.
pub const DEFAULT_KEEP: usize = 5;

/// An open, rotating file.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    /// A file at `path` (opened at the first write).
    pub fn new(path: PathBuf, max_bytes: u64, keep: usize) -> RotatingFile {
        RotatingFile {
            path,
            max_bytes: max_bytes.max(1),
            keep,
            file: None,
            size: 0,
        }
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `lines` (each ending in a newline), rotating between lines
    /// when the next would not fit, and syncs the file.
    pub fn append<S: AsRef<str>>(&mut self, lines: &[S]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        let mut pending = String::new();
        for line in lines {
            let line = line.as_ref();
            let fill = self.size + pending.len() as u64;
            if fill > 0 && fill + line.len() as u64 > self.max_bytes {
                self.write(pending.as_bytes())?;
                pending.clear();
                self.rotate()?;
            }
            pending.push_str(line);
        }
        self.write(pending.as_bytes())
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = bytes.len() as u64;
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("the export file is not open"));
        };
        let written = file.write_all(bytes).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Reopen next time: the size is unknown after a partial write,
            // and a half line is finished by no one (a reader skips it).
            self.file = None;
            return Err(e);
        }
        self.size += len;
        Ok(())
    }

    fn open(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        // A line cut by a crash would glue onto the next one: end it.
        if self.size > 0 && !ends_with_newline(&self.path)? {
            file.write_all(b"\n")?;
            self.size += 1;
        }
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.open()
    }
}

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn files_rotate_by_size_and_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut file = RotatingFile::new(path.clone(), 20, 2);
        for n in (0..10).step_by(2) {
            // 10 bytes a line: two lines per file.
            let lines = [format!("line {n:04}\n"), format!("line {:04}\n", n + 1)];
            file.append(&lines).unwrap();
        }
        assert_eq!(lines(&path), ["line 0008", "line 0009"]);
        assert_eq!(
            lines(&dir.path().join("events.jsonl.1")),
            ["line 0006", "line 0007"]
        );
        assert_eq!(
            lines(&dir.path().join("events.jsonl.2")),
            ["line 0004", "line 0005"]
        );
        assert!(!dir.path().join("events.jsonl.3").exists());
        // Rotation happens between the lines of one call too.
        file.append(&["a\n".repeat(5), "b\n".repeat(5), "c\n".repeat(5)])
            .unwrap();
        assert_eq!(lines(&path), ["c"; 5]);
        let mut ab = vec!["a"; 5];
        ab.extend(["b"; 5]);
        assert_eq!(lines(&dir.path().join("events.jsonl.1")), ab);
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn a_reopened_file_continues_and_ends_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, "whole\nhalf").unwrap();
        let mut file = RotatingFile::new(path.clone(), 1 << 20, 1);
        file.append(&["next\n"]).unwrap();
        assert_eq!(lines(&path), ["whole", "half", "next"]);
    }
}
