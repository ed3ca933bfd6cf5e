//! The namespace controller's part: a Namespace being deleted loses its contents (Pods
//! gracefully, through their kubelet), and goes once nothing is left in it.

use crate::kinds::{self, KINDS};
use crate::meta;
use crate::ops;
use crate::store::Store;

pub fn reconcile(store: &mut Store) {
    let terminating: Vec<String> = store
        .list(kinds::namespaces(), None)
        .filter(|n| !n["metadata"]["deletionTimestamp"].is_null())
        .map(|n| meta::name(n).to_string())
        .collect();
    for ns in terminating {
        let mut left = 0;
        for kind in KINDS.iter().filter(|k| k.namespaced) {
            let objs: Vec<(String, bool)> = store
                .list(kind, Some(&ns))
                .map(|o| {
                    (
                        meta::name(o).to_string(),
                        !o["metadata"]["deletionTimestamp"].is_null(),
                    )
                })
                .collect();
            for (name, deleting) in objs {
                left += 1;
                if !deleting {
                    let _ = ops::delete(store, kind, &ns, &name, None, &serde_json::Value::Null);
                }
            }
        }
        if left == 0 {
            store.remove(kinds::namespaces(), "", &ns);
        }
    }
}
