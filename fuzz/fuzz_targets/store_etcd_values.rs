//! What the etcd store parses: values read from etcd (bundle, history, lock), etcd keys mapped
//! to change-feed entries, and `--store etcd://...` addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bmcert_store_etcd::fuzzing::decode_values(data);
    let mut key = b"/p/".to_vec();
    key.extend_from_slice(data);
    let _ = bmcert_store_etcd::fuzzing::change_key(&key);
    let _ = bmcert_store_etcd::parse_store_url(&String::from_utf8_lossy(data));
});
