//! [`RawStorage`] for the etcd store (feature `testing`): raw puts of its values, for the
//! corruption suite of the conformance tests.

use bmcert_store::testing::{RawItem, RawStorage};
use bmcert_store::{SecretKey, StoreError, StoreFuture};
use bmcert_topology::Target;

use crate::store::EtcdStore;

impl EtcdStore {
    fn raw_key(&self, target: &Target, item: RawItem) -> Result<String, StoreError> {
        let keys = self.layout();
        match item {
            RawItem::Bundle => Ok(keys.bundle(target)),
            RawItem::State => Ok(keys.history(target)),
            other => Err(StoreError::NotFound(format!(
                "the etcd store keeps no {other:?} of its own"
            ))),
        }
    }

    /// Rewrites the JSON of `target`'s bundle value with `edit`.
    fn edit_bundle(
        &self,
        target: &Target,
        edit: impl FnOnce(&mut serde_json::Value) + Send + 'static,
    ) -> StoreFuture<'static, ()> {
        let key = self.layout().bundle(target);
        self.run(move |s| async move {
            let (kv, _) = s.get_one(&key).await?;
            let kv = kv.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            let mut value: serde_json::Value = serde_json::from_slice(kv.value())
                .map_err(|e| StoreError::NotFound(format!("{key}: {e}")))?;
            edit(&mut value);
            let bytes = serde_json::to_vec(&value)
                .map_err(|e| StoreError::NotFound(format!("{key}: {e}")))?;
            let mut client = s.client.clone();
            client.put(key, bytes, None).await.map_err(|e| s.err(e))?;
            Ok(())
        })
    }
}

impl RawStorage for EtcdStore {
    fn items(&self) -> Vec<RawItem> {
        vec![RawItem::Bundle, RawItem::State]
    }

    fn read_raw<'a>(
        &'a self,
        target: &'a Target,
        item: RawItem,
    ) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = self.raw_key(target, item);
        self.run(move |s| async move {
            let (kv, _) = s.get_one(&key?).await?;
            Ok(kv.map(|kv| kv.value().to_vec()))
        })
    }

    fn write_raw<'a>(
        &'a self,
        target: &'a Target,
        item: RawItem,
        bytes: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        let key = self.raw_key(target, item);
        let bytes = bytes.to_vec();
        self.run(move |s| async move {
            let mut client = s.client.clone();
            client.put(key?, bytes, None).await.map_err(|e| s.err(e))?;
            Ok(())
        })
    }

    fn swap_key<'a>(&'a self, target: &'a Target, key: &'a SecretKey) -> StoreFuture<'a, ()> {
        let format = serde_json::to_value(key.format()).unwrap_or_default();
        let hex_key = hex::encode(key.secret_der());
        self.edit_bundle(target, move |v| {
            v["key_format"] = format;
            v["key"] = serde_json::Value::String(hex_key);
        })
    }

    fn set_not_after<'a>(
        &'a self,
        target: &'a Target,
        not_after: time::OffsetDateTime,
    ) -> StoreFuture<'a, ()> {
        let text = not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        self.edit_bundle(target, move |v| {
            v["meta"]["not_after"] = serde_json::Value::String(text);
        })
    }

    fn add_strays<'a>(&'a self, _target: &'a Target) -> StoreFuture<'a, Vec<String>> {
        let prefix = self.layout().all().to_owned();
        self.run(move |s| async move {
            let strays = [
                format!("{prefix}bundle/not-a-target"),
                format!("{prefix}bundle/domain:NOT A DOMAIN"),
                format!("{prefix}history/not-a-target"),
                format!("{prefix}stray/key"),
            ];
            let mut client = s.client.clone();
            for key in &strays {
                client
                    .put(key.as_str(), b"stray".to_vec(), None)
                    .await
                    .map_err(|e| s.err(e))?;
            }
            Ok(strays.to_vec())
        })
    }
}
