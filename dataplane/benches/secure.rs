//! Per-packet cost of sealing and opening an overlay packet
//! (ChaCha20-Poly1305 from `ring`, in place, AAD = the GENEVE header with
//! options) for 64, 512 and 1500 B inner frames over IPv4, next to the plain
//! encapsulation it adds to, and of the replay window.
//!
//! Run: `cargo bench -p mongate-dataplane --bench secure`.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mongate_dataplane::secure::{ReplayWindow, aead};
use mongate_dataplane::wire::ethernet::MacAddr;
use mongate_dataplane::wire::geneve::{FlowOption, SecurityOption};
use mongate_dataplane::wire::overlay::{EncapParams, OverlayTemplate, TemplateConfig, decap};
use ring::aead::{CHACHA20_POLY1305, LessSafeKey, UnboundKey};

const HEADROOM: usize = 256;

fn template(secure: bool) -> OverlayTemplate {
    let mut cfg = TemplateConfig::new(
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
        Ipv4Addr::new(198, 18, 0, 1).into(),
        Ipv4Addr::new(198, 19, 0, 1).into(),
    );
    cfg.vni = 0x00AB_CDEF;
    cfg.secure = secure;
    OverlayTemplate::new(&cfg).expect("valid template")
}

fn bench(c: &mut Criterion) {
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7; 32]).expect("key"));
    let mut g = c.benchmark_group("secure");
    g.throughput(Throughput::Elements(1));
    for len in [64usize, 512, 1500] {
        let plain = template(false);
        let sealed = template(true);
        let mut buf = vec![0u8; HEADROOM + len + 64];
        let fill = |buf: &mut [u8]| {
            for (i, b) in buf[HEADROOM..HEADROOM + len].iter_mut().enumerate() {
                *b = u8::try_from(i & 0xFF).unwrap_or(0);
            }
        };
        fill(&mut buf);
        let mut p = EncapParams {
            flow: FlowOption {
                flow_id: 7,
                seq: 0,
                timestamp_ns: 0,
            },
            entropy: 0x1234_5678,
            ..EncapParams::default()
        };
        g.bench_function(format!("encap_plain_{len}B"), |b| {
            b.iter(|| {
                p.flow.seq += 1;
                black_box(plain.encap(&mut buf, HEADROOM, len, &p).expect("fits"))
            });
        });
        let mut counter = 0u64;
        g.bench_function(format!("encap_seal_{len}B"), |b| {
            b.iter(|| {
                counter += 1;
                p.security = SecurityOption {
                    receiver_index: 9,
                    counter,
                };
                let r = sealed
                    .encap_to_seal(&mut buf, HEADROOM, len, &p)
                    .expect("fits");
                aead::seal(&sealed, &mut buf[r.clone()], &key, counter).expect("seals");
                black_box(r)
            });
        });
        // One sealed frame, opened again and again (a fresh copy each time:
        // opening decrypts in place).
        fill(&mut buf);
        p.security.counter = 1;
        let r = sealed
            .encap_to_seal(&mut buf, HEADROOM, len, &p)
            .expect("fits");
        aead::seal(&sealed, &mut buf[r.clone()], &key, 1).expect("seals");
        let frame = buf[r].to_vec();
        let d = decap(&frame, false).expect("parses");
        let mut work = frame.clone();
        g.bench_function(format!("decap_open_{len}B"), |b| {
            b.iter(|| {
                work.copy_from_slice(&frame);
                let d2 = decap(&work, false).expect("parses");
                aead::open(&mut work, &d2, &key, 1).expect("opens");
                black_box(&work[d.inner.clone()]);
            });
        });
        // The cipher alone, ChaCha20-Poly1305 against AES-256-GCM (the
        // other AEAD the issue allows; ring uses AES-NI/PCLMUL where present).
        let aes =
            LessSafeKey::new(UnboundKey::new(&ring::aead::AES_256_GCM, &[7; 32]).expect("key"));
        for (name, k) in [("chacha20poly1305", &key), ("aes256gcm", &aes)] {
            let mut data = vec![0u8; len];
            let mut n = 0u64;
            g.bench_function(format!("cipher_{name}_{len}B"), |b| {
                b.iter(|| {
                    n += 1;
                    let nonce =
                        ring::aead::Nonce::assume_unique_for_key(SecurityOption::aead_nonce(n));
                    black_box(
                        k.seal_in_place_separate_tag(
                            nonce,
                            ring::aead::Aad::from(&[0u8; 48]),
                            &mut data,
                        )
                        .expect("seals"),
                    )
                });
            });
        }
        g.bench_function(format!("copy_only_{len}B"), |b| {
            b.iter(|| {
                work.copy_from_slice(&frame);
                black_box(&work);
            });
        });
    }
    let mut w = ReplayWindow::new();
    let mut n = 0u64;
    g.bench_function("replay_window_in_order", |b| {
        b.iter(|| {
            n += 1;
            black_box(w.update(n))
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
