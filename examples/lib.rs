//! Runnable examples of the bmcert crates; run them with `cargo run --example NAME`.
//!
//! - `quickstart`: the whole path of a certificate on the embedded default, in seconds and
//!   with no service installed: a temporary directory store, a local authority, installs
//!   through `bmcert::CertManager` (one refused with its report), HTTPS and IMAP listeners
//!   on 127.0.0.1 and a table of which certificate each name got and why. Its output is
//!   checked by `tests/quickstart.rs`.
//! - `https_server`: a long-running HTTPS and implicit-TLS mail server over a given store
//!   and topology, following the store live (used with the `bmcert` command by hand).
//! - `embedding`: every snippet of `docs/embedding.md`, in order, run on a temporary
//!   directory store (and on etcd and pebble when `BMCERT_ETCD_ENDPOINTS` and
//!   `BMCERT_PEBBLE_DIRECTORY` are set); `tests/embedding_guide.rs` checks the guide's lines
//!   are in it and runs it.
//!
//! This library is empty: the examples are plain programs and not an API.
