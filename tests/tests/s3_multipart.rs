//! Streams larger than one part go to S3 with multipart upload and come back byte for byte (moto).

use aphex::artifacts::{ArtifactStore, S3Store};
use aphex_tests::moto::Moto;

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_of_several_parts_round_trips_through_multipart_upload() {
    let moto = Moto::start();
    let sdk = moto.sdk_config("us-east-1").await;
    let client =
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    client.create_bucket().bucket("artifacts").send().await.unwrap();
    let store = S3Store::new(client.clone(), "artifacts");

    // 20 MiB in 1 MiB chunks: three parts of the store's 8 MiB part size.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let expected: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let chunks: Vec<bytes::Bytes> = expected.chunks(1 << 20).map(bytes::Bytes::copy_from_slice).collect();
    tokio::spawn(async move {
        for chunk in chunks {
            tx.send(Ok(chunk)).await.unwrap();
        }
    });
    let written = store.put_stream("repo/sha/archive.tar.zst", rx).await.unwrap();
    assert_eq!(written, expected.len() as u64);
    let object =
        client.get_object().bucket("artifacts").key("repo/sha/archive.tar.zst").send().await.unwrap();
    let body = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(body.len(), expected.len());
    assert!(body == expected[..], "the object is the stream, byte for byte");
}
