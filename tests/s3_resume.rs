//! The worker's S3 store reopening an object at an offset against LocalStack's S3 (the
//! resumable reads of `source::resume`): a ranged, conditional GetObject gives exactly the bytes
//! after the offset, and an object overwritten since it was opened is refused as changed, so a
//! read never splices two objects. The mid-stream breaks themselves are driven in
//! `tests/pipeline.rs` over the in-memory store.

mod common;

use common::Aws;
use f4a_indexer::source::s3::S3Store;
use f4a_indexer::source::{ObjectRef, ObjectStore, ResumeAt, ResumeError};
use tokio::io::AsyncReadExt;

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ salt).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_reopens_at_an_offset_and_a_changed_one_is_refused() {
    let aws = Aws::new().await;
    let bucket = format!("f4a-resume-{}", std::process::id());
    aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let body = pattern(3 << 20, 0);
    aws.put(&bucket, "big.bin", body.clone()).await;

    let store = S3Store::new(&Aws::sdk_config().await, true);
    let obj = ObjectRef {
        bucket: bucket.clone(),
        key: "big.bin".into(),
        alt_key: None,
        version_id: None,
        size: None,
        event_time: None,
    };
    let mut opened = store.open(&obj).await.expect("open");
    assert_eq!(opened.length, Some(body.len() as u64));
    let mut head = vec![0u8; 1 << 20];
    opened.body.read_exact(&mut head).await.unwrap();
    drop(opened.body);

    let at = ResumeAt {
        bucket: bucket.clone(),
        key: opened.key.clone(),
        etag: opened.etag.clone(),
        version_id: opened.version_id.clone(),
        offset: head.len() as u64,
    };
    assert!(at.etag.is_some(), "S3 gives an ETag to reopen by");
    let mut rest = Vec::new();
    store
        .open_from(&at)
        .await
        .expect("reopen at the offset")
        .read_to_end(&mut rest)
        .await
        .unwrap();
    assert_eq!(rest.len(), body.len() - head.len());
    head.extend_from_slice(&rest);
    assert!(
        head == body,
        "head + reopened rest = the object, byte for byte"
    );

    // Overwritten since it was opened: its ETag is another, and the reopen says so.
    aws.put(&bucket, "big.bin", pattern(3 << 20, 7)).await;
    match store.open_from(&at).await {
        Err(ResumeError::Changed(_)) => {}
        Err(other) => panic!("expected Changed, got {other:?}"),
        Ok(_) => panic!("a changed object was reopened"),
    }
}
