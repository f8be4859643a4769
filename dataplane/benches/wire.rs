//! Per-packet cost of the overlay encapsulation and decapsulation, for 64 B
//! and 1500 B inner frames, over IPv4 (no UDP checksum) and IPv6 (UDP
//! checksum over the whole packet, the dominant cost for large frames).
//!
//! Run: `cargo bench -p mongate-dataplane --bench wire`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mongate_dataplane::wire::checksum;
use mongate_dataplane::wire::ethernet::MacAddr;
use mongate_dataplane::wire::geneve::FlowOption;
use mongate_dataplane::wire::overlay::{EncapParams, OverlayTemplate, TemplateConfig, decap};

const HEADROOM: usize = 256;

fn template(v6: bool) -> OverlayTemplate {
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into(),
        )
    } else {
        (
            Ipv4Addr::new(198, 18, 0, 1).into(),
            Ipv4Addr::new(198, 19, 0, 1).into(),
        )
    };
    let mut cfg = TemplateConfig::new(
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
        src,
        dst,
    );
    cfg.vni = 0x00AB_CDEF;
    OverlayTemplate::new(&cfg).expect("valid template")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    for v6 in [false, true] {
        let t = template(v6);
        let fam = if v6 { "v6" } else { "v4" };
        for len in [64usize, 1500] {
            let mut buf = vec![0u8; HEADROOM + len + 64];
            for (i, b) in buf[HEADROOM..HEADROOM + len].iter_mut().enumerate() {
                *b = u8::try_from(i & 0xFF).unwrap_or(0);
            }
            let mut p = EncapParams {
                flow: FlowOption {
                    flow_id: 7,
                    seq: 0,
                    timestamp_ns: 0,
                },
                entropy: 0x1234_5678,
                ..EncapParams::default()
            };
            g.throughput(Throughput::Elements(1));
            g.bench_function(format!("encap_{fam}_{len}B"), |b| {
                b.iter(|| {
                    p.flow.seq += 1;
                    p.flow.timestamp_ns += 1000;
                    black_box(
                        t.encap(black_box(&mut buf), HEADROOM, len, &p)
                            .expect("encap"),
                    )
                })
            });
            let r = t.encap(&mut buf, HEADROOM, len, &p).expect("encap");
            let frame = buf[r].to_vec();
            g.bench_function(format!("decap_{fam}_{len}B"), |b| {
                b.iter(|| black_box(decap(black_box(&frame), true).expect("decap")))
            });
            g.bench_function(format!("decap_nocsum_{fam}_{len}B"), |b| {
                b.iter(|| black_box(decap(black_box(&frame), false).expect("decap")))
            });
        }
    }
    let data = vec![0xA5u8; 1500];
    g.throughput(Throughput::Bytes(1500));
    g.bench_function("checksum_1500B", |b| {
        b.iter(|| black_box(checksum::data(black_box(&data))))
    });
    g.bench_function("checksum_reference_1500B", |b| {
        b.iter(|| black_box(checksum::data_reference(black_box(&data))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
