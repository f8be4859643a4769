//! A plain `recvmmsg` / `sendmmsg` UDP loop: the baseline io_uring ports are
//! measured against (benches), and a traffic generator for tests and benches.
//! Not used by the dataplane itself.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use super::headers::{SOCKADDR_LEN, encode_sockaddr};

/// A UDP socket with `batch` preallocated buffers and message headers.
pub struct MmsgSocket {
    sock: UdpSocket,
    buf_size: usize,
    bufs: Box<[u8]>,
    lens: Box<[usize]>,
    iovs: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
    name: [u8; SOCKADDR_LEN],
}

impl MmsgSocket {
    /// Wraps `sock` (set nonblocking) with `batch` buffers of `buf_size` bytes.
    pub fn new(sock: UdpSocket, batch: usize, buf_size: usize) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: mmsghdr is a plain C struct of pointers and integers; all-zero
        // bytes are a valid empty value.
        let msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Ok(Self {
            sock,
            buf_size,
            bufs: vec![0; batch * buf_size].into_boxed_slice(),
            lens: vec![0; batch].into_boxed_slice(),
            iovs: vec![iov; batch].into_boxed_slice(),
            msgs: vec![msg; batch].into_boxed_slice(),
            name: [0; SOCKADDR_LEN],
        })
    }

    /// Sets SO_RCVBUF and SO_SNDBUF (the FORCE variants when permitted), as a
    /// [`super::UringPort`] does with `socket_buf_bytes`.
    pub fn set_buffers(&self, bytes: u32) -> io::Result<()> {
        super::socket::set_buffers(self.sock.as_fd(), bytes, bytes)
    }

    /// The socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Number of buffers.
    pub fn batch(&self) -> usize {
        self.lens.len()
    }

    /// Sets every buffer to `payload` (truncated to the buffer size).
    pub fn fill(&mut self, payload: &[u8]) {
        let n = payload.len().min(self.buf_size);
        for (i, len) in self.lens.iter_mut().enumerate() {
            self.bufs[i * self.buf_size..i * self.buf_size + n].copy_from_slice(&payload[..n]);
            *len = n;
        }
    }

    /// Buffer `i` as last received or filled.
    pub fn buffer(&self, i: usize) -> &[u8] {
        &self.bufs[i * self.buf_size..i * self.buf_size + self.lens[i]]
    }

    fn point(&mut self, n: usize, recv: bool) -> usize {
        let n = n.min(self.lens.len());
        let base = self.bufs.as_mut_ptr();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: base.wrapping_add(i * self.buf_size).cast(),
                iov_len: if recv { self.buf_size } else { self.lens[i] },
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_iov = &raw mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = if recv {
                std::ptr::null_mut()
            } else {
                self.name.as_mut_ptr().cast()
            };
            self.msgs[i].msg_len = 0;
        }
        n
    }

    /// Receives up to `batch` datagrams without blocking (0 when none is waiting).
    pub fn recv(&mut self) -> io::Result<usize> {
        let n = self.point(self.lens.len(), true);
        for m in &mut self.msgs[..n] {
            m.msg_hdr.msg_namelen = 0;
        }
        let vlen = libc::c_uint::try_from(n).unwrap_or(libc::c_uint::MAX);
        // SAFETY: msgs[..n] point to live iovecs into `bufs` of `buf_size` bytes
        // each; no name buffer is given; all of it outlives the call.
        let rc = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match usize::try_from(rc) {
            Ok(got) => {
                for i in 0..got {
                    self.lens[i] = self.msgs[i].msg_len as usize;
                }
                Ok(got)
            }
            Err(_) => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                e => Err(e),
            },
        }
    }

    /// Sends buffers `0..n` (with their current lengths) to `dst` in one
    /// `sendmmsg`; returns how many the kernel took (0 when the socket is full).
    pub fn send(&mut self, n: usize, dst: SocketAddr) -> io::Result<usize> {
        let name_len = encode_sockaddr(dst, &mut self.name);
        let n = self.point(n, false);
        for m in &mut self.msgs[..n] {
            m.msg_hdr.msg_namelen = name_len;
        }
        let vlen = libc::c_uint::try_from(n).unwrap_or(libc::c_uint::MAX);
        // SAFETY: msgs[..n] point to live iovecs into `bufs` and to `name`, a
        // valid sockaddr of `name_len` bytes; all of it outlives the call.
        let rc = unsafe {
            libc::sendmmsg(
                self.sock.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
            )
        };
        match usize::try_from(rc) {
            Ok(sent) => Ok(sent),
            Err(_) => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                e => Err(e),
            },
        }
    }
}
