//! A node that stops sending mid-object must not hang the client: the read gives up
//! after `request_timeout` with a retryable error.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::Duration;

use fdw_client::{Client, ClientConfig, ClusterCa, ErrorKind, Member, WriteType};
use fdw_net::transport::{self, TransportTuning};
use fdw_net::wire::{FrameHeader, NodeStatus, ObjectInfo, Request, Response};
use fdw_net::{Version, wire::ObjectRef};

const FRAME: u32 = 4096;

/// A fake node: answers status, and answers get with a header, one frame header and
/// half of the frame's bytes, then goes silent with the stream open.
async fn stalling_node(ca: &ClusterCa) -> Member {
    let socket = transport::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let endpoint = transport::server_endpoint(
        &ca.issue("node-0").unwrap(),
        socket,
        &TransportTuning::default(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let conn = incoming.await.unwrap();
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        match transport::read_request(&mut recv).await.unwrap() {
                            Request::Status => {
                                let status = NodeStatus {
                                    node: 0,
                                    backing: "test".into(),
                                    frame_bytes: FRAME,
                                    ..Default::default()
                                };
                                transport::write_message(
                                    &mut send,
                                    &Response::Status(status).encode(),
                                )
                                .await
                                .unwrap();
                                send.finish().unwrap();
                            }
                            Request::Get { object, .. } => {
                                let data = vec![1u8; FRAME as usize];
                                let info = ObjectInfo {
                                    object: ObjectRef {
                                        bucket: object.bucket,
                                        key: object.key,
                                    },
                                    version: Version(1),
                                    len: FRAME.into(),
                                    crc: crc32fast::hash(&data),
                                    object_len: FRAME.into(),
                                    offset: 0,
                                    frame_bytes: FRAME,
                                    write_type: WriteType::AsyncThrough,
                                    persisted: false,
                                    persist_failure: None,
                                    replicas: vec![0],
                                    metadata: Default::default(),
                                    digest: Default::default(),
                                };
                                transport::write_message(
                                    &mut send,
                                    &Response::Object(info).encode(),
                                )
                                .await
                                .unwrap();
                                send.write_all(&FrameHeader::for_data(&data).encode())
                                    .await
                                    .unwrap();
                                send.write_all(&data[..FRAME as usize / 2]).await.unwrap();
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    });
                }
            });
        }
    });
    Member {
        id: 0,
        name: "node-0".into(),
        addr,
    }
}

#[tokio::test]
async fn a_node_stalling_mid_frame_times_out_the_read() {
    let ca = ClusterCa::generate().unwrap();
    let member = stalling_node(&ca).await;
    let mut config = ClientConfig::new(vec![member]);
    config.request_timeout = Duration::from_millis(500);
    let client = Client::connect(config, &ca.issue("client").unwrap())
        .await
        .unwrap();
    let read = tokio::time::timeout(Duration::from_secs(20), client.get("stage-1", "k")).await;
    let err = read.expect("the client gave up by itself").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
}
