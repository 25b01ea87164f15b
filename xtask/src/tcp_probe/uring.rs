//! A single `IORING_OP_CONNECT` through a one-entry io_uring, with raw syscalls (no io_uring
//! crate is needed for one operation). Layouts from include/uapi/linux/io_uring.h.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicU32, Ordering},
};

use socket2::{SockAddr, Socket};

const IORING_OP_CONNECT: u8 = 16;
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x0800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;

#[repr(C)]
#[derive(Default)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

#[repr(C)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    op_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    splice_fd_in: i32,
    addr3: u64,
    pad: u64,
}

#[repr(C)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

/// An mmap'd region, unmapped on Drop.
struct Mapped {
    ptr: *mut u8,
    len: usize,
}

impl Mapped {
    fn new(ring: &OwnedFd, len: usize, offset: i64) -> io::Result<Self> {
        // SAFETY: maps `len` bytes of the ring at the kernel-defined offset; checked below.
        #[expect(unsafe_code, reason = "mmap(2) of the io_uring rings")]
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                ring.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The u32 at byte `offset` (a ring index shared with the kernel).
    fn word(&self, offset: u32) -> &AtomicU32 {
        assert!(offset as usize + 4 <= self.len, "ring offset out of range");
        // SAFETY: in bounds (checked), 4-byte aligned by the kernel's layout, and the kernel
        // only accesses it atomically too.
        #[expect(unsafe_code, reason = "an io_uring ring index")]
        unsafe {
            &*self.ptr.add(offset as usize).cast::<AtomicU32>()
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        #[expect(unsafe_code, reason = "munmap(2)")]
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

fn syscall_result(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Connects `socket` to `addr` with one `IORING_OP_CONNECT`.
pub fn connect(socket: &Socket, addr: &SockAddr) -> io::Result<()> {
    let mut params = Params::default();
    // SAFETY: io_uring_setup(2) with one entry and a zeroed params struct it fills in.
    #[expect(unsafe_code, reason = "io_uring_setup(2)")]
    let fd = syscall_result(unsafe {
        libc::syscall(libc::SYS_io_uring_setup, 1u32, &mut params as *mut Params)
    })?;
    // SAFETY: a new descriptor nothing else owns.
    #[expect(unsafe_code, reason = "adopting the ring descriptor")]
    let ring = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let sq_len = (params.sq_off.array + params.sq_entries * 4) as usize;
    let cq_len =
        (params.cq_off.cqes as usize) + params.cq_entries as usize * std::mem::size_of::<Cqe>();
    let sq = Mapped::new(&ring, sq_len, IORING_OFF_SQ_RING)?;
    let cq = Mapped::new(&ring, cq_len, IORING_OFF_CQ_RING)?;
    let sqes = Mapped::new(&ring, params.sq_entries as usize * 64, IORING_OFF_SQES)?;

    let sqe = Sqe {
        opcode: IORING_OP_CONNECT,
        flags: 0,
        ioprio: 0,
        fd: socket.as_raw_fd(),
        // For a connect, `off` holds the address length and `addr` points at the address.
        off: u64::from(addr.len()),
        addr: addr.as_ptr() as u64,
        len: 0,
        op_flags: 0,
        user_data: 1,
        buf_index: 0,
        personality: 0,
        splice_fd_in: 0,
        addr3: 0,
        pad: 0,
    };
    // SAFETY: slot 0 of the SQE array (one entry, 64 bytes, mapped above).
    #[expect(unsafe_code, reason = "writing the submission entry")]
    unsafe {
        sqes.ptr.cast::<Sqe>().write(sqe)
    };
    let tail = sq.word(params.sq_off.tail).load(Ordering::Acquire);
    let mask = sq.word(params.sq_off.ring_mask).load(Ordering::Relaxed);
    sq.word(params.sq_off.array + (tail & mask) * 4)
        .store(0, Ordering::Relaxed);
    sq.word(params.sq_off.tail)
        .store(tail.wrapping_add(1), Ordering::Release);

    // SAFETY: io_uring_enter(2): submit one, wait for one; no signal mask.
    #[expect(unsafe_code, reason = "io_uring_enter(2)")]
    syscall_result(unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            ring.as_raw_fd(),
            1u32,
            1u32,
            IORING_ENTER_GETEVENTS,
            std::ptr::null::<libc::c_void>(),
            0usize,
        )
    })?;
    let head = cq.word(params.cq_off.head).load(Ordering::Acquire);
    let cq_mask = cq.word(params.cq_off.ring_mask).load(Ordering::Relaxed);
    let at = params.cq_off.cqes as usize + (head & cq_mask) as usize * std::mem::size_of::<Cqe>();
    assert!(
        at + std::mem::size_of::<Cqe>() <= cq.len,
        "cqe out of range"
    );
    // SAFETY: the completion entry at the head, in bounds (checked), written by the kernel
    // before it advanced the tail that io_uring_enter waited for.
    #[expect(unsafe_code, reason = "reading the completion entry")]
    let cqe = unsafe { cq.ptr.add(at).cast::<Cqe>().read() };
    cq.word(params.cq_off.head)
        .store(head.wrapping_add(1), Ordering::Release);
    if cqe.user_data != 1 {
        return Err(io::Error::other("unexpected completion"));
    }
    if cqe.res < 0 {
        return Err(io::Error::from_raw_os_error(-cqe.res));
    }
    let _ = cqe.flags;
    Ok(())
}
