//! The ring against a model: single-threaded random operation sequences
//! against a `VecDeque`, and two threads streaming sequence numbers through a
//! small ring in random batch sizes.

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

/// Heap-backed ring memory for tests, 64-byte aligned.
struct Mem {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}
impl Mem {
    fn new(bytes: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(bytes, 64).unwrap();
        // SAFETY: non-zero size layout.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        Self { ptr, layout }
    }
}
impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}
// SAFETY: test memory handed to one producer and one consumer thread.
unsafe impl Send for Mem {}
// SAFETY: accessed only through the ring protocol.
unsafe impl Sync for Mem {}

fn pair(size: u32) -> (Mem, Producer<u64>, Consumer<u64>) {
    let mem = Mem::new(ShmRing::<u64>::bytes(size));
    // SAFETY: fresh aligned memory of the right size, alive as long as `mem`
    // (the tests keep `mem` alive past the producer and consumer).
    let ring = unsafe { ShmRing::<u64>::init(mem.ptr, ShmRing::<u64>::bytes(size), size) }.unwrap();
    // SAFETY: one producer and one consumer.
    let (p, c) = unsafe { (ring.producer(), ring.consumer()) };
    (mem, p, c)
}

#[derive(Debug, Clone)]
enum Op {
    Push(u8),
    Publish,
    Pop(u8),
    Release,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..20).prop_map(Op::Push),
        Just(Op::Publish),
        (0u8..20).prop_map(Op::Pop),
        Just(Op::Release)
    ]
}

proptest! {
    /// Every value comes out once, in order; a push fails exactly when the
    /// model says the ring is full (counting popped-but-unreleased slots).
    #[test]
    fn matches_model(size_log in 0u32..5, ops in proptest::collection::vec(op(), 1..200)) {
        let size = 1u32 << size_log;
        let (_mem, mut p, mut c) = pair(size);
        let mut published: VecDeque<u64> = VecDeque::new();
        let mut pending: Vec<u64> = Vec::new();
        let mut unreleased = 0u32;
        let mut next = 0u64;
        for o in ops {
            match o {
                Op::Push(n) => for _ in 0..n {
                    let occupied = u32::try_from(published.len() + pending.len()).unwrap() + unreleased;
                    let ok = p.push(next);
                    prop_assert_eq!(ok, occupied < size);
                    if ok { pending.push(next); next += 1; }
                },
                Op::Publish => { p.publish(); published.extend(pending.drain(..)); }
                Op::Pop(n) => for _ in 0..n {
                    let got = c.pop();
                    prop_assert_eq!(got, published.pop_front());
                    if got.is_some() { unreleased += 1; }
                },
                Op::Release => { c.release(); unreleased = 0; }
            }
        }
    }
}

#[test]
fn corrupt_indices_are_detected_not_followed() {
    let (mem, mut p, mut c) = pair(8);
    // The "other side" claims 1000 slots are published.
    // SAFETY: producer index sits at offset 64 of the header.
    let prod = unsafe { &*(mem.ptr.as_ptr().add(64).cast::<AtomicU32>()) };
    prod.store(1000, std::sync::atomic::Ordering::Release);
    assert_eq!(c.available(1), Err(RingError::Corrupt));
    assert_eq!(c.pop(), None);
    // The consumer claims to have read slots never produced.
    // SAFETY: consumer index sits at offset 128.
    let cons = unsafe { &*(mem.ptr.as_ptr().add(128).cast::<AtomicU32>()) };
    prod.store(0, std::sync::atomic::Ordering::Release);
    cons.store(500, std::sync::atomic::Ordering::Release);
    for i in 0..8 {
        assert!(p.push(i));
    }
    assert_eq!(p.free(1), Err(RingError::Corrupt));
    assert!(!p.push(9));
}

#[test]
fn attach_checks_header() {
    let mem = Mem::new(ShmRing::<u64>::bytes(16));
    // SAFETY: valid region.
    let r = unsafe { ShmRing::<u64>::attach(mem.ptr, ShmRing::<u64>::bytes(16), 16) };
    assert_eq!(r.err(), Some(ShmRingError::Magic));
    // SAFETY: valid region.
    unsafe { ShmRing::<u64>::init(mem.ptr, ShmRing::<u64>::bytes(16), 16) }.unwrap();
    // SAFETY: valid region.
    let r = unsafe { ShmRing::<u32>::attach(mem.ptr, ShmRing::<u64>::bytes(16), 16) };
    assert_eq!(r.err(), Some(ShmRingError::Geometry));
    // SAFETY: valid region.
    let r = unsafe { ShmRing::<u64>::attach(mem.ptr, ShmRing::<u64>::bytes(16), 32) };
    assert_eq!(r.err(), Some(ShmRingError::Geometry));
    // SAFETY: too short a length is refused before reading slots.
    let r = unsafe { ShmRing::<u64>::attach(mem.ptr, 100, 16) };
    assert_eq!(r.err(), Some(ShmRingError::Region));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Two threads: every value arrives exactly once and in order, whatever
    /// the batch sizes on either side.
    #[test]
    fn threads_stream_in_order(size_log in 1u32..7, pb in 1u32..40, cb in 1u32..40) {
        const N: u64 = 50_000;
        let size = 1u32 << size_log;
        let (mem, mut p, mut c) = pair(size);
        let mem = std::sync::Arc::new(mem);
        let m2 = mem.clone();
        let t = std::thread::spawn(move || {
            let _keep = m2;
            let mut next = 0u64;
            while next < N {
                let mut k = 0;
                while k < pb && next < N && p.push(next) { next += 1; k += 1; }
                p.publish();
                if k == 0 { std::hint::spin_loop(); }
            }
        });
        let mut expect = 0u64;
        while expect < N {
            let mut k = 0;
            while k < cb {
                match c.pop() { Some(v) => { prop_assert_eq!(v, expect); expect += 1; k += 1; } None => break }
            }
            c.release();
            if k == 0 { std::hint::spin_loop(); }
        }
        t.join().unwrap();
        prop_assert_eq!(c.pop(), None);
    }
}
