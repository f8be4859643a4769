use super::Packet;

/// Packets moved per port call and per stage call.
pub const BATCH_SIZE: usize = 64;

/// A fixed-capacity batch of packets: no allocation on the hot path.
#[derive(Clone)]
pub struct Batch {
    pkts: [Packet; BATCH_SIZE],
    len: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            pkts: [Packet::new(0, 0, 0, 0); BATCH_SIZE],
            len: 0,
        }
    }
    /// Number of packets.
    pub const fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Room left.
    pub const fn spare(&self) -> usize {
        BATCH_SIZE - self.len
    }
    /// Appends `p`; returns false (and does nothing) when full.
    pub fn push(&mut self, p: Packet) -> bool {
        if self.len == BATCH_SIZE {
            return false;
        }
        self.pkts[self.len] = p;
        self.len += 1;
        true
    }
    /// Empties the batch (the caller has dealt with every frame).
    pub fn clear(&mut self) {
        self.len = 0;
    }
    /// Keeps the first `len` packets (the caller has dealt with the rest's
    /// frames); a longer `len` changes nothing.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
    /// The packets.
    pub fn as_slice(&self) -> &[Packet] {
        &self.pkts[..self.len]
    }
    /// The packets, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [Packet] {
        &mut self.pkts[..self.len]
    }
}
