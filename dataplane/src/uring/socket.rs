//! The UDP socket under an io_uring port: nonblocking, SO_REUSEPORT (one socket
//! per worker on the same address), large buffers, optionally bound to a device.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::headers::{SOCKADDR_LEN, encode_sockaddr};

/// Sets an integer socket option.
fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `fd` is an open socket; the option value points to a live c_int of `len` bytes.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets SO_RCVBUF or SO_SNDBUF to `bytes`, trying the *FORCE variant first (it
/// ignores `net.core.[rw]mem_max` but needs CAP_NET_ADMIN).
fn set_buf(
    fd: BorrowedFd<'_>,
    force: libc::c_int,
    plain: libc::c_int,
    bytes: u32,
) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(fd, libc::SOL_SOCKET, force, v).or_else(|_| set_int(fd, libc::SOL_SOCKET, plain, v))
}

/// Sets the receive and send buffers (FORCE variants first).
pub(crate) fn set_buffers(fd: BorrowedFd<'_>, rcv: u32, snd: u32) -> io::Result<()> {
    set_buf(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, rcv)?;
    set_buf(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, snd)
}

/// Opens, configures and binds the UDP socket. Returns it with its actual
/// local address (the port is resolved when `local` asked for port 0).
pub(crate) fn open_udp(
    local: SocketAddr,
    device: Option<&str>,
    rcvbuf_bytes: u32,
    sndbuf_bytes: u32,
) -> io::Result<(OwnedFd, SocketAddr)> {
    let domain = if local.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            domain,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let b = fd.as_fd();
    set_int(b, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    if local.is_ipv6() {
        // One socket = one address family: IPv4 traffic gets its own port.
        set_int(b, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    set_buffers(b, rcvbuf_bytes, sndbuf_bytes)?;
    if let Some(dev) = device {
        let name = dev.as_bytes();
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad device name {dev:?}"),
            ));
        }
        let len = libc::socklen_t::try_from(name.len()).unwrap_or(0);
        // SAFETY: `name` is a live byte slice of `len` bytes; the kernel copies it.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                name.as_ptr().cast(),
                len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let mut sa = [0u8; SOCKADDR_LEN];
    let sa_len = encode_sockaddr(local, &mut sa);
    // SAFETY: `sa` holds a valid sockaddr_in/sockaddr_in6 of `sa_len` bytes; the
    // kernel copies it (it does not need alignment: copy_from_user).
    let rc = unsafe { libc::bind(fd.as_raw_fd(), sa.as_ptr().cast(), sa_len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // Borrow std's getsockname through a UdpSocket view, then take the fd back.
    let sock = UdpSocket::from(fd);
    let actual = sock.local_addr()?;
    Ok((OwnedFd::from(sock), actual))
}
