//! Real QUIC on loopback: mutual TLS accepts the cluster's own and refuses strangers.

use std::net::SocketAddr;

use super::*;
use crate::wire::{ErrorKind, NodeStatus};

const LOOPBACK: &str = "127.0.0.1:0";

fn addr() -> SocketAddr {
    LOOPBACK.parse().unwrap()
}

/// A server that answers one Status request per stream, echoing frames' CRC check.
fn serve(endpoint: quinn::Endpoint) {
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let response = match read_request(&mut recv).await {
                        Ok(Request::Status) => Response::Status(NodeStatus {
                            node: 7,
                            backing: "test".into(),
                            frame_bytes: 4096,
                            pool_bytes: 1,
                            pinned_bytes: 0,
                            evictable_bytes: 0,
                            ..Default::default()
                        }),
                        Ok(_) => Response::error(ErrorKind::InvalidInput, "only status here"),
                        Err(err) => Response::error(ErrorKind::InvalidInput, err),
                    };
                    let _ = write_message(&mut send, &response.encode()).await;
                    let _ = send.finish();
                }
            });
        }
    });
}

async fn status(conn: &quinn::Connection) -> Result<Response, TransportError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    write_message(&mut send, &Request::Status.encode()).await?;
    send.finish()
        .map_err(|e| TransportError::Config(e.to_string()))?;
    read_response(&mut recv).await
}

#[tokio::test]
async fn cluster_members_talk_and_strangers_are_refused() {
    let ca = ClusterCa::generate().unwrap();
    let tuning = TransportTuning::default();
    let server =
        server_endpoint(&ca.issue("node-0").unwrap(), bind(addr()).unwrap(), &tuning).unwrap();
    let server_addr = server.local_addr().unwrap();
    serve(server);

    // A member: request and response over one connection, reused.
    let client = client_endpoint(&ca.issue("client").unwrap(), addr(), &tuning).unwrap();
    let conn = connect(&client, "node-0", server_addr).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(
            status(&conn).await.unwrap(),
            Response::Status(NodeStatus { node: 7, .. })
        ));
    }

    // Wrong server name: the server's certificate is not node-1's.
    assert!(connect(&client, "node-1", server_addr).await.is_err());

    // A client whose certificate comes from another CA: the server refuses it.
    let stranger = client_endpoint(
        &ClusterCa::generate().unwrap().issue("client").unwrap(),
        addr(),
        &tuning,
    )
    .unwrap();
    let refused = match connect(&stranger, "node-0", server_addr).await {
        Err(_) => true,
        // TLS 1.3 lets the handshake finish on the client before the server's verdict
        // arrives; the first request then fails.
        Ok(conn) => status(&conn).await.is_err(),
    };
    assert!(refused, "a certificate from another CA must be refused");
}

#[tokio::test]
async fn garbage_gets_a_clear_error_and_the_server_keeps_serving() {
    let ca = ClusterCa::generate().unwrap();
    let tuning = TransportTuning::default();
    let server =
        server_endpoint(&ca.issue("node-0").unwrap(), bind(addr()).unwrap(), &tuning).unwrap();
    let server_addr = server.local_addr().unwrap();
    serve(server);
    let client = client_endpoint(&ca.issue("client").unwrap(), addr(), &tuning).unwrap();
    let conn = connect(&client, "node-0", server_addr).await.unwrap();

    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    write_message(&mut send, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    send.finish().unwrap();
    match read_response(&mut recv).await.unwrap() {
        Response::Error {
            kind: ErrorKind::InvalidInput,
            message,
        } => {
            assert!(message.contains("not an fdw message"), "{message}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        matches!(status(&conn).await.unwrap(), Response::Status(_)),
        "the same connection still works"
    );
}
