//! Identifiers and time units of the path manager.

/// Time in nanoseconds since an arbitrary epoch chosen by the caller (monotonic clock).
pub type Nanos = u64;

/// One millisecond in [`Nanos`].
pub const MS: Nanos = 1_000_000;
/// One second in [`Nanos`].
pub const SEC: Nanos = 1_000_000_000;

/// A local uplink (one Internet connection of this gateway), as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UplinkId(pub u16);

/// A site (a gateway of the overlay): a destination or a waypoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(pub u32);

/// One address of a remote site (MONET's "several addresses returned by DNS": one per remote uplink).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrId(pub u32);

/// Dense handle of a registered path, returned by
/// [`PathManager::add_path`](super::PathManager::add_path). Ids that were never returned are
/// rejected (counted) by every input method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathId(pub u32);

/// What a path is: local uplink, optional overlay waypoint, remote address, toward `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathKey {
    /// Destination site.
    pub dst: SiteId,
    /// Local uplink the packets leave on.
    pub uplink: UplinkId,
    /// Waypoint site relaying the packets, `None` for the direct path.
    pub waypoint: Option<SiteId>,
    /// Address of the destination site the packets are sent to.
    pub remote: AddrId,
}
