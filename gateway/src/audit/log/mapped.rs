//! The segment being written, mapped into the gateway's memory (`MAP_SHARED`): appending a
//! record is a copy into the page cache with no system call, and what is in the page cache
//! survives the gateway being killed exactly as a `write(2)` would. The file past the last
//! record is reserved by writing zeros there before any record is copied there, so a full
//! disk shows up as a failed reservation (the caller refuses its request) and never as a
//! `SIGBUS` on a page with no block behind it. Zeros written (not `fallocate(2)`'s unwritten
//! extents) leave nothing for the file system to convert when the records are synced, so an
//! `fdatasync` is a data flush without a journal commit: 2.5 times faster on ext4 here, which
//! strict durability waits for. The reader stops at the zeros.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
    ptr::NonNull,
    sync::Arc,
};

/// Reserved ahead of the last record at most, when the disk has room to spare: small, as
/// the zeros are written while the writer is held (about 0.3 ms a time).
const AHEAD: u64 = 1024 * 1024;
/// A reservation takes at most this fraction of the free space: on a nearly full disk the
/// log reserves page by page, so it stops exactly where the disk does, as a write would.
const FREE_SHARE: u64 = 1024;
const PAGE: u64 = 4096;

/// How records reach the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Copy {
    /// A copy into the mapping: no system call (batched durability).
    Mapped,
    /// `pwrite(2)` into the reserved zeros: under strict durability every sync would
    /// write-protect the mapped pages again (a TLB flush on every core, then a fault on the
    /// next copy), which costs more than the call.
    Written,
}

pub(super) struct Mapped {
    file: Arc<File>,
    copy: Copy,
    /// Covers at least `reserved` bytes of the file (more is mapped than is reserved).
    map: Option<Mapping>,
    /// The file's size: records, then zeros allocated on disk.
    reserved: u64,
    /// Whole pages before this offset are written and no longer mapped.
    released: u64,
}

impl Mapped {
    /// Takes over `file` (opened for reading and writing), cut back to `end`: whatever lay
    /// past the records is given back, and reserved again as records arrive.
    pub fn new(file: File, end: u64, copy: Copy) -> io::Result<Self> {
        file.set_len(end)?;
        Ok(Self {
            file: Arc::new(file),
            copy,
            map: None,
            reserved: end,
            released: 0,
        })
    }

    /// For syncing without holding the writer.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Whether `end` lies within the space already reserved (a copy, no system call).
    pub fn holds(&self, end: u64) -> bool {
        end <= self.reserved
            && (self.copy == Copy::Written
                || self.map.as_ref().is_some_and(|m| m.len as u64 >= end))
    }

    /// Makes the file at least `end` bytes long, allocated on disk, and mapped. A failure
    /// (a full disk) leaves everything written as it was.
    pub fn reserve(&mut self, end: u64) -> io::Result<()> {
        if end > self.reserved {
            let needed = round_up(end, PAGE);
            let roomy = match free_bytes(&self.file) {
                Ok(free) => (free / FREE_SHARE).min(AHEAD) / PAGE * PAGE,
                Err(_) => AHEAD,
            };
            let wanted = needed.max(self.reserved + roomy);
            match allocate(&self.file, self.reserved, wanted) {
                Ok(()) => self.reserved = wanted,
                Err(_) if wanted > needed => {
                    allocate(&self.file, self.reserved, needed)?;
                    self.reserved = needed;
                }
                Err(error) => return Err(error),
            }
        }
        if self.copy == Copy::Mapped && self.map.as_ref().is_none_or(|m| (m.len as u64) < end) {
            // Past the reserved space as far as the segment may grow, so a mapping lasts a
            // whole segment; nothing is ever copied there before it is reserved.
            let len = round_up(
                end.max(super::SEGMENT_BYTES + AHEAD).max(self.reserved),
                2 * 1024 * 1024,
            );
            self.map = None;
            self.map = Some(Mapping::new(&self.file, len)?);
            self.released = 0;
        }
        Ok(())
    }

    /// Copies `bytes` to `offset`, which [`Mapped::reserve`] made room for.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let end = offset + bytes.len() as u64;
        assert!(self.holds(end), "audit segment write past its reservation");
        match (&self.map, self.copy) {
            (_, Copy::Written) => self.file.write_all_at(bytes, offset),
            (Some(map), Copy::Mapped) => {
                map.copy_in(offset as usize, bytes);
                Ok(())
            }
            (None, Copy::Mapped) => Err(io::Error::other("the audit segment is not mapped")),
        }
    }

    /// Unmaps the whole pages before `offset` (records are never copied there again), so
    /// that syncing them needs no write-protection of each mapped page (a TLB flush on every
    /// core per page): one flush for the lot instead. The page cache keeps them, dirty.
    pub fn release_before(&mut self, offset: u64) {
        let end = offset / PAGE * PAGE;
        if let Some(map) = &self.map {
            if end > self.released && map.release(self.released as usize, end as usize) {
                self.released = end;
            }
        }
    }

    pub fn copy(&self) -> Copy {
        self.copy
    }

    /// Cuts the file to `len` (a closed segment ends with its last record); a later write
    /// reserves again.
    pub fn cut(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.reserved = len;
        Ok(())
    }
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Allocates `[from, to)` of `file` on disk with zeros, extending its size to `to`. A full
/// disk fails the write (the file system reserves the blocks as it accepts the data).
fn allocate(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Bytes an unprivileged writer may still allocate on the file's file system.
fn free_bytes(file: &File) -> io::Result<u64> {
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    #[expect(unsafe_code, reason = "zero-initialising a C struct")]
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we own and a valid, writable statvfs.
    #[expect(unsafe_code, reason = "fstatvfs(2) has no std wrapper")]
    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), &mut stat) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// A shared, writable mapping of a file's first `len` bytes; unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; only `&mut Mapped` writes to it.
#[expect(
    unsafe_code,
    reason = "a raw mapping moved between threads with its owner"
)]
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(file: &File, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a new mapping of a descriptor we own; the kernel picks the address.
        #[expect(unsafe_code, reason = "mmap(2) has no std wrapper")]
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(ptr.cast::<u8>())
            .map(|ptr| Self { ptr, len })
            .ok_or_else(|| io::Error::other("mmap returned null"))
    }

    /// The caller checked that `[offset, offset + bytes.len())` is mapped and reserved.
    fn copy_in(&self, offset: usize, bytes: &[u8]) {
        assert!(offset.saturating_add(bytes.len()) <= self.len);
        // SAFETY: the range lies inside this mapping (checked above) and inside the file's
        // allocated size (checked by the caller), so the pages exist; `bytes` is our own
        // memory, which cannot overlap a mapping of the segment.
        #[expect(unsafe_code, reason = "copying into the mapped segment")]
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(offset),
                bytes.len(),
            );
        }
    }
}

impl Mapping {
    /// Drops the page-table entries of `[from, to)` (page aligned, inside the mapping).
    fn release(&self, from: usize, to: usize) -> bool {
        assert!(from <= to && to <= self.len && from.is_multiple_of(PAGE as usize));
        // SAFETY: the range lies inside this mapping; for a shared file mapping
        // MADV_DONTNEED only unmaps (dirty pages stay in the page cache, a later access
        // maps them again), so no data is lost and no reference into it is held.
        #[expect(unsafe_code, reason = "madvise(2) has no std wrapper")]
        let rc = unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(from).cast(),
                to - from,
                libc::MADV_DONTNEED,
            )
        };
        rc == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which nothing refers to any more.
        #[expect(unsafe_code, reason = "munmap(2) has no std wrapper")]
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;
    use crate::audit::tests::TempDir;

    #[test]
    fn released_pages_keep_their_records_and_later_ones_land_after_them() {
        let dir = TempDir::new("mapped-release");
        let path = dir.0.join("segment");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("segment");
        let mut segment = Mapped::new(file, 0, Copy::Mapped).expect("mapped");
        let line = [b'r'; 1000];
        let mut expected = Vec::new();
        for round in 0..3 {
            // Records span pages; each round releases what lies wholly behind them.
            for _ in 0..9 {
                let at = expected.len() as u64;
                segment.reserve(at + line.len() as u64).expect("reserve");
                segment.write_at(at, &line).expect("copy");
                expected.extend_from_slice(&line);
            }
            expected.push(b'0' + round);
            let at = expected.len() as u64 - 1;
            segment.reserve(at + 1).expect("reserve");
            segment.write_at(at, &[b'0' + round]).expect("copy");
            segment.release_before(expected.len() as u64);
            assert_eq!(segment.released, expected.len() as u64 / PAGE * PAGE);
        }
        segment.cut(expected.len() as u64).expect("cut");
        assert_eq!(std::fs::read(&path).expect("read back"), expected);
    }
}
