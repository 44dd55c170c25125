//! Wall time to obtain 1 and 20 certificates from pebble through `bmcert-acme`
//! (`cargo bench -p bmcert-benches --bench acme`), the numbers `benches/acme/compare.sh` puts
//! next to certbot and lego against the same pebble.
//!
//! Not a criterion benchmark: one issuance takes hundreds of milliseconds of network round
//! trips and CA work, and the comparison is per run against external tools, so this prints
//! plain wall times (median of `BMCERT_ACME_BENCH_ROUNDS` rounds, default 3).
//!
//! Needs the `BMCERT_PEBBLE_*` variables of `scripts/peers/pebble.sh`; without them, or when
//! run by `cargo test` (no `--bench` argument), it prints why and exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench binary

use std::sync::Arc;
use std::time::{Duration, Instant};

use bmcert_acme::{
    AcmeClient, AcmeConfig, ChallengeBoard, Directory, Http01Listener, IssueRequest, MemoryState,
};
use bmcert_topology::{DomainName, DomainSite, Site, Target, Topology};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("acme bench: run with `cargo bench -p bmcert-benches --bench acme`");
        return;
    }
    let Ok(directory) = std::env::var("BMCERT_PEBBLE_DIRECTORY") else {
        println!("acme bench: SKIPPED, BMCERT_PEBBLE_DIRECTORY is not set (source scripts/peers/pebble.sh or run benches/acme/compare.sh)");
        return;
    };
    let ca = std::fs::read(std::env::var("BMCERT_PEBBLE_CA").unwrap()).unwrap();
    let mgmt = std::env::var("BMCERT_PEBBLE_MANAGEMENT").unwrap();
    let port: u16 = std::env::var("BMCERT_PEBBLE_HTTP01_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let rounds: usize = std::env::var("BMCERT_ACME_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut config = AcmeConfig::new(Directory::Url(directory.clone()));
        config.directory_roots = AcmeConfig::certificates_from_pem(&ca, "pebble CA").unwrap();
        let probe =
            AcmeClient::new(config.clone(), MemoryState::new(), ChallengeBoard::new()).unwrap();
        let root = probe.fetch(&format!("{mgmt}/roots/0")).await.unwrap();
        config.chain_roots = AcmeConfig::certificates_from_pem(&root, "pebble root").unwrap();

        let state = MemoryState::new();
        let acme = Arc::new(
            AcmeClient::new(config, state.clone(), ChallengeBoard::new())
                .unwrap()
                .with_gate(state),
        );
        let _http = Http01Listener::bind(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Arc::new(acme.board().clone()),
        )
        .await
        .unwrap();
        acme.accept_terms().await.unwrap();
        // Register the account once, outside the timings (certbot and lego get the same).
        let warm = topology(0, 1, "warm");
        acme.issue(&warm, &IssueRequest::new(target(&warm, 0)))
            .await
            .unwrap();

        let mut one = Vec::new();
        let mut twenty = Vec::new();
        for round in 0..rounds {
            let t = topology(round, 1, "one");
            let start = Instant::now();
            acme.issue(&t, &IssueRequest::new(target(&t, 0)))
                .await
                .unwrap();
            one.push(start.elapsed());

            let t = Arc::new(topology(round, 20, "twenty"));
            let start = Instant::now();
            let tasks: Vec<_> = (0..20)
                .map(|i| {
                    let acme = acme.clone();
                    let t = t.clone();
                    tokio::spawn(
                        async move { acme.issue(&t, &IssueRequest::new(target(&t, i))).await },
                    )
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
            twenty.push(start.elapsed());
        }
        println!("acme bench against {directory} ({rounds} rounds, median):");
        println!("bmcert-acme 1 certificate: {:.3} s", median(&mut one));
        println!(
            "bmcert-acme 20 certificates (concurrent): {:.3} s",
            median(&mut twenty)
        );
    });
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

/// `count` domains, each with its own unique name (no authorization reuse across runs).
fn topology(round: usize, count: usize, tag: &str) -> Topology {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut t = Topology::new(Site::new("https://mail.example.test", &[]).unwrap());
    t.default_domain = Some(DomainName::new("example.test").unwrap());
    for i in 0..count {
        let name = format!(
            "{tag}{round}-{i}-{stamp}-{}.example.test",
            std::process::id()
        );
        t.domains.push(DomainSite {
            name: DomainName::new(&name).unwrap(),
            site: Some(Site::new(&format!("https://{name}"), &[]).unwrap()),
        });
    }
    t
}

fn target(t: &Topology, i: usize) -> Target {
    Target::Domain(t.domains[i].name.clone())
}
