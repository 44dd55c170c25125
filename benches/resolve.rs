//! SNI resolution: `bmcert-resolve` next to a bare `HashMap<String, Arc<_>>` lookup and next
//! to rustls's own `ResolvesServerCertUsingSni`, at 1,000 to 100,000 domains; the cost of
//! applying one changed certificate; the memory each domain costs.
//!
//! Run: `cargo bench -p bmcert-benches --bench resolve`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // bench code

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bmcert_benches::sni::{host, hot_names, live_index, target, topology};
use bmcert_resolve::{certified_key, LiveIndex, ResolvesServerCertUsingSniWithFallback, Service};
use bmcert_topology::Target;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ResolvesServerCert, ResolvesServerCertUsingSni};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// Counts live heap bytes, to measure memory per domain.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Names looked up per iteration, spread over the whole index.
const BATCH: usize = 1_000;

struct Pki {
    root_der: CertificateDer<'static>,
    /// One wildcard certificate shared by every domain: the lookup is what is measured.
    shared: Arc<CertifiedKey>,
    other: Arc<CertifiedKey>,
}

fn pki() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: &[&str]| {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &root).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        certified_key(vec![cert.der().clone()], &key).unwrap()
    };
    Pki {
        root_der: root.der().clone(),
        shared: leaf(&["*.bench.test", "mail.example.test"]),
        other: leaf(&["*.bench.test"]),
    }
}

fn resolve(c: &mut Criterion) {
    let pki = pki();
    let mut group = c.benchmark_group("resolve");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(BATCH as u64));
    for n in SIZES {
        let index = live_index(n, &pki.shared);
        let mut bare: HashMap<String, Arc<CertifiedKey>> = HashMap::with_capacity(n);
        for i in 0..n {
            bare.insert(host(i), pki.shared.clone());
        }
        let names = hot_names(n, BATCH);
        group.bench_with_input(BenchmarkId::new("bmcert", n), &names, |b, names| {
            b.iter(|| {
                for name in names {
                    black_box(index.resolve(Service::Https, Some(black_box(name))));
                }
            })
        });
        let snapshot = index.snapshot();
        group.bench_with_input(
            BenchmarkId::new("bmcert_snapshot", n),
            &names,
            |b, names| {
                b.iter(|| {
                    for name in names {
                        black_box(snapshot.resolve(Service::Https, Some(black_box(name))));
                    }
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("bare_hashmap", n), &names, |b, names| {
            b.iter(|| {
                for name in names {
                    black_box(bare.get(black_box(name.as_str())).cloned());
                }
            })
        });
    }
    group.finish();
}

fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    name: &ServerName<'static>,
) -> usize {
    let mut c = ClientConnection::new(client.clone(), name.clone()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::with_capacity(8192);
    let mut rounds = 0;
    while c.is_handshaking() || s.is_handshaking() {
        rounds += 1;
        assert!(rounds < 10, "handshake does not finish");
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
    }
    rounds
}

fn handshakes(c: &mut Criterion) {
    let pki = pki();
    let n = 100_000;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.root_der.clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = Resumption::disabled();
    let client = Arc::new(client);

    let server_config = |resolver: Arc<dyn ResolvesServerCert>| {
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Arc::new(config)
    };
    let ours = server_config(Arc::new(ResolvesServerCertUsingSniWithFallback::new(
        Arc::new(live_index(n, &pki.shared)),
    )));
    let mut sni = ResolvesServerCertUsingSni::new();
    for i in 0..n {
        sni.add(&host(i), (*pki.shared).clone()).unwrap();
    }
    let theirs = server_config(Arc::new(sni));

    let names: Vec<ServerName<'static>> = hot_names(n, BATCH)
        .into_iter()
        .filter(|s| !s.starts_with("unknown")) // rustls's resolver has no fallback
        .map(|s| ServerName::try_from(s).unwrap())
        .collect();
    let mut group = c.benchmark_group("handshake_100k_domains");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    for (label, server) in [("bmcert", &ours), ("rustls_sni", &theirs)] {
        let mut k = 0;
        group.bench_function(label, |b| {
            b.iter(|| {
                k = (k + 1) % names.len();
                black_box(handshake(&client, server, &names[k]))
            })
        });
    }
    group.finish();
}

fn update(c: &mut Criterion) {
    let pki = pki();
    let n = 100_000;
    let index = Arc::new(live_index(n, &pki.shared));
    let changed = target(n / 2);
    let mut group = c.benchmark_group("update_100k_domains");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let mut flip = false;
    group.bench_function("apply_one_certificate", |b| {
        b.iter(|| {
            flip = !flip;
            let cert = if flip { &pki.other } else { &pki.shared };
            index.set_certificate(black_box(&changed), Some(cert.clone()));
        })
    });
    // The same while another thread resolves without pause: readers are never blocked, and
    // the writer is not slowed by them.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (index, stop, served) = (index.clone(), stop.clone(), served.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if index
                    .resolve(Service::Https, Some("w50000.bench.test"))
                    .is_some()
                {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    while served.load(Ordering::Relaxed) == 0 {
        std::thread::yield_now();
    }
    group.bench_function("apply_one_certificate_with_concurrent_reader", |b| {
        b.iter(|| {
            flip = !flip;
            let cert = if flip { &pki.other } else { &pki.shared };
            index.set_certificate(black_box(&changed), Some(cert.clone()));
        })
    });
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    println!(
        "update_100k_domains: the concurrent reader resolved {} times",
        served.load(Ordering::Relaxed)
    );
    group.finish();
}

/// Prints the heap bytes per domain of the index (topology and shared certificate excluded).
fn memory(_: &mut Criterion) {
    let pki = pki();
    for n in SIZES {
        let topology = topology(n);
        let before = LIVE.load(Ordering::Relaxed);
        let index = LiveIndex::new(&topology);
        index.set_certificates(
            std::iter::once(Target::System)
                .chain((0..n).map(target))
                .map(|t| (t, Some(pki.shared.clone()))),
        );
        let after = LIVE.load(Ordering::Relaxed);
        println!(
            "memory/{n}: {:.1} bytes per domain (index only; certificate bytes are shared)",
            (after - before) as f64 / n as f64
        );
        drop(index);
    }
}

criterion_group!(benches, resolve, handshakes, update, memory);
criterion_main!(benches);
