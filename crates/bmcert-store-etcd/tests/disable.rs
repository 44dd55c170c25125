//! `disable` on etcd deletes the certificate and every kept version: afterwards no key under
//! the store's prefix holds the private key of any of them (the values as they are now; etcd
//! keeps older revisions of a key until the cluster's compaction, see docs/store.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use bmcert_store::{Condition, Store};
use bmcert_topology::Target;

#[test]
fn disable_leaves_no_key_of_the_target_under_the_prefix() {
    let Some(endpoints) = common::endpoints() else {
        return;
    };
    let prefix = format!("/disable-{}/", std::process::id());
    let store = common::connect(&endpoints, &prefix);
    let pki = common::Pki::new();
    let target: Target = "domain:acme.test".parse().unwrap();
    let bundles: Vec<_> = (0..3).map(|_| pki.bundle()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for b in &bundles {
            store.install(&target, b, &Condition::none()).await.unwrap();
        }
        let secrets: Vec<String> = bundles
            .iter()
            .map(|b| hex::encode(b.secret_key().secret_der()))
            .collect();
        let mut client = etcd_client::Client::connect(&endpoints, None)
            .await
            .unwrap();
        let values = |resp: etcd_client::GetResponse| -> Vec<String> {
            resp.kvs()
                .iter()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                .collect()
        };
        let opts = || Some(etcd_client::GetOptions::new().with_prefix());
        let before = values(client.get(prefix.as_str(), opts()).await.unwrap());
        for s in &secrets {
            assert!(
                before.iter().any(|v| v.contains(s.as_str())),
                "the check sees the stored keys"
            );
        }

        assert!(store
            .disable(&target, &Condition::none())
            .await
            .unwrap()
            .is_some());
        let after = values(client.get(prefix.as_str(), opts()).await.unwrap());
        for s in &secrets {
            assert!(
                !after.iter().any(|v| v.contains(s.as_str())),
                "a private key is still stored after disable"
            );
        }
        assert!(store.current(&target).await.unwrap().is_none());
        assert!(store.history(&target).await.unwrap().is_empty());
        client
            .delete(
                prefix.as_str(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await
            .unwrap();
    });
}
