//! Benchmarks live beside this file; run them with `cargo bench -p bmcert-benches`.
