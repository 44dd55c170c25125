//! Any bytes as the files of a directory store (a target's state.json, cert.pem, key.pem,
//! meta.json, the journal and a record), split on 0xFF: opening and reading the store must
//! return values or typed errors, never panic.
#![no_main]

use bmcert_store::{block_on, DirStore, RecordKey, Revision, Store};
use bmcert_topology::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let root = std::env::temp_dir().join(format!("bmcert-fuzz-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let target_dir = root.join("targets/system");
    let version = target_dir.join("v000000001");
    if std::fs::create_dir_all(&version).is_err() || std::fs::create_dir_all(root.join("records")).is_err() {
        return;
    }
    let mut parts = data.split(|&b| b == 0xFF);
    let files = [
        target_dir.join("state.json"),
        version.join("cert.pem"),
        version.join("key.pem"),
        version.join("meta.json"),
        root.join("journal"),
        root.join("records/account"),
    ];
    for file in &files {
        let _ = std::fs::write(file, parts.next().unwrap_or_default());
    }
    if let Ok(store) = DirStore::open(&root) {
        let _ = block_on(store.current(&Target::System));
        let _ = block_on(store.history(&Target::System));
        let _ = block_on(store.list());
        let _ = block_on(store.revision());
        if let Ok(key) = RecordKey::new("account") {
            let _ = block_on(store.get(&key));
        }
        if let Ok(mut watch) = block_on(store.watch(Revision::ZERO)) {
            let _ = watch.try_recv();
        }
    }
    let _ = std::fs::remove_dir_all(&root);
});
