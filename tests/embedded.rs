//! The embedded store keeps everything across restarts.

mod common;

use std::sync::Arc;

use common::{Backend, Harness, app_for};
use guestlist::store::embedded::EmbeddedStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_and_audiences_survive_a_restart() {
    let mut h = Harness::new(Backend::Embedded).await;
    h.active("kept").await;
    h.create("later", 1, 2).await;
    h.replace("kept", &[1, 2, 3]).await;
    h.upload("kept", "add", "text/plain", "4\n").await;
    h.upload("kept", "remove", "text/plain", "1\n").await;
    let before = h.campaign("kept").await;
    let (_, list_before) = h.get("/v1/campaigns").await;

    // Close the database (every handle) and open the same directory again.
    let dir = h.data_dir.take().unwrap();
    drop(h);
    let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let h = Harness {
        app: app_for(store.clone(), 1 << 20),
        store,
        backend: Backend::Embedded,
        redis: None,
        data_dir: Some(dir),
    };
    assert_eq!(h.campaign("kept").await, before);
    assert_eq!(h.get("/v1/campaigns").await.1, list_before);
    assert_eq!(h.export("kept").await, [2, 3, 4]);
    assert!(h.is_member("kept", 4).await);
    assert!(!h.is_member("kept", 1).await);
    assert_eq!(h.campaigns_of(2).await, ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_open_a_store_in_use() {
    let h = Harness::new(Backend::Embedded).await;
    let dir = h.data_dir.as_ref().unwrap().path();
    let err = EmbeddedStore::open(dir)
        .await
        .err()
        .expect("the file is locked");
    assert!(
        format!("{err:#}").contains("another guestlist process"),
        "{err:#}"
    );
}
