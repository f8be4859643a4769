//! The replay window of one receive key (RFC 6479, as WireGuard's): a ring of
//! 64 words (4096 bits) indexed by counter; moving the window forward clears
//! whole words instead of shifting bits. It accepts any counter not seen
//! before that is at most [`WINDOW`] below the highest accepted one, so
//! reordering across uplinks of up to 4032 packets is not loss.

use super::REJECT_AFTER_MESSAGES;

const WORD_BITS: u64 = 64;
/// Words in the bitmap (a power of two).
const WORDS: usize = 64;
/// Bits in the bitmap.
pub const BITS: u64 = WORD_BITS * WORDS as u64;
/// How far below the highest accepted counter a counter is still accepted:
/// one word less than the bitmap (the word being entered is cleared).
pub const WINDOW: u64 = BITS - WORD_BITS;

/// Why a counter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Seen before.
    Duplicate,
    /// More than [`WINDOW`] below the highest accepted counter.
    TooOld,
    /// At or beyond [`REJECT_AFTER_MESSAGES`].
    Limit,
}

/// The replay window of one receive key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter accepted (0 before any).
    last: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

/// (word index in the ring, bit in the word) of a counter.
#[inline]
fn position(counter: u64) -> (usize, u64) {
    // The mask keeps the index below WORDS (64): the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let word = ((counter / WORD_BITS) & (WORDS as u64 - 1)) as usize;
    (word, 1u64 << (counter % WORD_BITS))
}

impl ReplayWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self {
            last: 0,
            bitmap: [0; WORDS],
        }
    }

    /// Whether `counter` would be accepted, without recording it (a cheap
    /// pre-check before the AEAD open).
    #[inline]
    pub fn check(&self, counter: u64) -> Result<(), Replay> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(Replay::Limit);
        }
        if counter > self.last {
            return Ok(());
        }
        if counter + WINDOW < self.last {
            return Err(Replay::TooOld);
        }
        let (w, bit) = position(counter);
        if self.bitmap[w] & bit != 0 {
            Err(Replay::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `counter` of a packet that authenticated; refuses it (and
    /// records nothing) when [`ReplayWindow::check`] would.
    #[inline]
    pub fn update(&mut self, counter: u64) -> Result<(), Replay> {
        self.check(counter)?;
        if counter > self.last {
            let current = self.last / WORD_BITS;
            let target = counter / WORD_BITS;
            let clear = (target - current).min(WORDS as u64);
            for i in 1..=clear {
                let (w, _) = position((current + i) * WORD_BITS);
                self.bitmap[w] = 0;
            }
            self.last = counter;
        }
        let (w, bit) = position(counter);
        self.bitmap[w] |= bit;
        Ok(())
    }

    /// Highest counter accepted so far (0 before any).
    pub const fn last(&self) -> u64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The specification: a counter is accepted once, when below the limit
    /// and at most WINDOW below the highest accepted.
    #[derive(Default)]
    struct Model {
        seen: BTreeSet<u64>,
        last: u64,
    }

    impl Model {
        fn update(&mut self, c: u64) -> Result<(), Replay> {
            if c >= REJECT_AFTER_MESSAGES {
                return Err(Replay::Limit);
            }
            if c + WINDOW < self.last {
                return Err(Replay::TooOld);
            }
            if !self.seen.insert(c) {
                return Err(Replay::Duplicate);
            }
            self.last = self.last.max(c);
            Ok(())
        }
    }

    #[test]
    fn basics() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.update(0), Ok(()));
        assert_eq!(w.update(0), Err(Replay::Duplicate));
        assert_eq!(w.update(2), Ok(()));
        assert_eq!(w.update(1), Ok(()));
        assert_eq!(w.check(1), Err(Replay::Duplicate));
        assert_eq!(w.update(WINDOW + 2), Ok(()));
        assert_eq!(w.update(1), Err(Replay::TooOld));
        assert_eq!(w.update(3), Ok(()), "exactly WINDOW below");
        assert_eq!(w.update(REJECT_AFTER_MESSAGES), Err(Replay::Limit));
        assert_eq!(w.update(u64::MAX), Err(Replay::Limit));
        assert_eq!(w.update(REJECT_AFTER_MESSAGES - 1), Ok(()));
        assert_eq!(w.last(), REJECT_AFTER_MESSAGES - 1);
        assert_eq!(w.update(REJECT_AFTER_MESSAGES - 2), Ok(()));
        assert_eq!(w.update(REJECT_AFTER_MESSAGES - 1), Err(Replay::Duplicate));
        // A far jump cleared everything old: 3 is now too old.
        assert_eq!(w.update(3), Err(Replay::TooOld));
    }

    #[test]
    fn reordering_within_the_window_is_not_loss() {
        let mut w = ReplayWindow::new();
        // Two uplinks 4000 packets apart, interleaved.
        for i in 0..4000u64 {
            assert_eq!(w.update(4000 + i), Ok(()));
            assert_eq!(w.update(i), Ok(()), "{i}");
        }
    }

    /// Counters near the window: the current block, jumps of whole blocks,
    /// far-future jumps and the counter limit.
    fn counter() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..300,
            0u64..20_000,
            (0u64..64).prop_map(|b| b * 64 * 63),
            (REJECT_AFTER_MESSAGES - 5000)..(REJECT_AFTER_MESSAGES + 5),
            any::<u64>(),
        ]
    }

    proptest! {
        #[test]
        fn matches_the_model(ops in proptest::collection::vec((counter(), -5000i64..64), 1..400)) {
            let mut w = ReplayWindow::new();
            let mut m = Model::default();
            for (c, rel) in ops {
                // Mostly counters near the highest so far (reordering), some absolute.
                for c in [c, m.last.saturating_add_signed(rel)] {
                    let checked = w.check(c);
                    let got = w.update(c);
                    prop_assert_eq!(checked, got);
                    prop_assert_eq!(got, m.update(c), "counter {}", c);
                    prop_assert_eq!(w.last(), m.last);
                }
            }
        }
    }
}
