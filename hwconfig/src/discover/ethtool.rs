//! The SIOCETHTOOL ioctl: driver info and channel (queue) counts.
//!
//! The only unsafe code of the crate lives here: building `struct ifreq`
//! with a pointer to an ethtool command struct and calling `ioctl(2)`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::discover::Channels;

const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const ETHTOOL_GCHANNELS: u32 = 0x0000_003c;
const ETHTOOL_SCHANNELS: u32 = 0x0000_003d;

/// `struct ethtool_drvinfo` from `<linux/ethtool.h>`.
#[repr(C)]
struct RawDrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ethtool_channels` from `<linux/ethtool.h>`.
#[repr(C)]
#[derive(Default)]
struct RawChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// Driver identity from ETHTOOL_GDRVINFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrvInfo {
    /// Driver name (`ixgbe`, `veth`).
    pub driver: String,
    /// Driver version string.
    pub version: String,
    /// Firmware version (often empty for virtual devices).
    pub firmware: String,
    /// Bus address (`0000:3b:00.0`), empty for virtual devices.
    pub bus_info: String,
}

/// A datagram socket used only as an ioctl handle (in the caller's netns).
#[derive(Debug)]
pub struct EthtoolSocket(OwnedFd);

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl EthtoolSocket {
    /// Opens the ioctl socket.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call with constant arguments; no pointers.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Runs one ethtool command whose struct starts with the `u32 cmd`.
    ///
    /// # Safety
    /// `T` must be the `#[repr(C)]` ethtool struct matching the `cmd` already
    /// stored in `data` (the kernel reads/writes `size_of` that struct).
    unsafe fn ioctl<T>(&self, ifname: &str, data: &mut T) -> io::Result<()> {
        let name = ifname.as_bytes();
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in ifr.ifr_name.iter_mut().zip(name) {
            *dst = libc::c_char::from_ne_bytes([src]);
        }
        ifr.ifr_ifru.ifru_data = std::ptr::from_mut(data).cast::<libc::c_char>();
        // SAFETY: `ifr` is a valid ifreq with a NUL-terminated name (zeroed
        // tail, len < IFNAMSIZ) and ifru_data points at `data`, a live,
        // exclusively borrowed struct of the layout the command expects
        // (caller's contract). The fd is a valid socket.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// ETHTOOL_GDRVINFO.
    pub fn drvinfo(&self, ifname: &str) -> io::Result<DrvInfo> {
        let mut raw = RawDrvInfo {
            cmd: ETHTOOL_GDRVINFO,
            driver: [0; 32],
            version: [0; 32],
            fw_version: [0; 32],
            bus_info: [0; 32],
            erom_version: [0; 32],
            reserved2: [0; 12],
            n_priv_flags: 0,
            n_stats: 0,
            testinfo_len: 0,
            eedump_len: 0,
            regdump_len: 0,
        };
        // SAFETY: RawDrvInfo is the repr(C) struct for ETHTOOL_GDRVINFO.
        unsafe { self.ioctl(ifname, &mut raw)? };
        Ok(DrvInfo {
            driver: cstr(&raw.driver),
            version: cstr(&raw.version),
            firmware: cstr(&raw.fw_version),
            bus_info: cstr(&raw.bus_info),
        })
    }

    /// ETHTOOL_GCHANNELS. `EOPNOTSUPP` if the driver has no channel support.
    pub fn channels(&self, ifname: &str) -> io::Result<Channels> {
        let mut raw = RawChannels {
            cmd: ETHTOOL_GCHANNELS,
            ..RawChannels::default()
        };
        // SAFETY: RawChannels is the repr(C) struct for ETHTOOL_GCHANNELS.
        unsafe { self.ioctl(ifname, &mut raw)? };
        Ok(Channels {
            max_rx: raw.max_rx,
            max_tx: raw.max_tx,
            max_other: raw.max_other,
            max_combined: raw.max_combined,
            rx: raw.rx_count,
            tx: raw.tx_count,
            other: raw.other_count,
            combined: raw.combined_count,
        })
    }

    /// ETHTOOL_SCHANNELS: sets the current counts of `ch` (max fields ignored).
    pub fn set_channels(&self, ifname: &str, ch: &Channels) -> io::Result<()> {
        let mut raw = RawChannels {
            cmd: ETHTOOL_SCHANNELS,
            rx_count: ch.rx,
            tx_count: ch.tx,
            other_count: ch.other,
            combined_count: ch.combined,
            ..RawChannels::default()
        };
        // SAFETY: RawChannels is the repr(C) struct for ETHTOOL_SCHANNELS.
        unsafe { self.ioctl(ifname, &mut raw) }
    }
}
