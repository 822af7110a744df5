//! Real swarms on 127.0.0.1: gossip with manual validation, sync requests, limits and scoring.

use std::sync::atomic::Ordering;

use super::*;

const COMMUNITY: &str = "00aa";
const WAIT: Duration = Duration::from_secs(20);

struct TestNode {
    client: Client,
    events: mpsc::Receiver<NetEvent>,
    addr: Multiaddr,
}

async fn start(config: NetConfig) -> TestNode {
    let (client, mut events, _task) =
        spawn(Keypair::generate_ed25519(), COMMUNITY, config).unwrap();
    let first = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("listening in time");
    let addr = match first.expect("network task running") {
        NetEvent::Listening(a) => a.with(libp2p::multiaddr::Protocol::P2p(client.peer_id())),
        other => panic!("unexpected first event {other:?}"),
    };
    TestNode {
        client,
        events,
        addr,
    }
}

/// Waits for the next gossip message, answering other events; `None` when `limit` passes first.
async fn next_gossip(
    node: &mut TestNode,
    limit: Duration,
) -> Option<(MessageId, PeerId, Option<PeerId>, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, node.events.recv()).await {
            Err(_) => return None,
            Ok(None) => panic!("network task stopped"),
            Ok(Some(NetEvent::Gossip {
                id,
                propagation_source,
                source,
                data,
                topic,
            })) => {
                assert_eq!(topic, Topic::Deltas);
                return Some((id, propagation_source, source, data));
            }
            Ok(Some(_)) => {}
        }
    }
}

/// Publishes once the topic has peers (subscriptions propagate after connecting), bounded in time.
async fn publish_when_ready(client: &Client, data: Vec<u8>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client.publish(Topic::Deltas, data.clone()).await {
            Ok(()) => return,
            Err(NetError::Publish(e)) if tokio::time::Instant::now() < deadline => {
                assert!(
                    e.contains("peers") || e.contains("Peers"),
                    "unexpected publish error {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish failed: {e}"),
        }
    }
}

/// Waits (bounded) until `client` has `n` peers in its mesh for the deltas topic.
async fn wait_for_mesh(client: &Client, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while client.mesh_peers(Topic::Deltas).await.unwrap().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mesh of {n} peers not formed in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_gossip_is_forwarded_and_rejected_is_not() {
    // A line a - b - c: everything c gets from a must pass through b's validation.
    let a = start(NetConfig::loopback()).await;
    let mut b = start(NetConfig::loopback()).await;
    let mut c = start(NetConfig::loopback()).await;
    b.client.dial(a.addr.clone()).await.unwrap();
    c.client.dial(b.addr.clone()).await.unwrap();
    wait_for_mesh(&b.client, 2).await;
    wait_for_mesh(&c.client, 1).await;

    publish_when_ready(&a.client, b"valid delta".to_vec()).await;
    let (id, via, source, data) = next_gossip(&mut b, WAIT).await.expect("b receives");
    assert_eq!(
        (data.as_slice(), via, source),
        (
            &b"valid delta"[..],
            a.client.peer_id(),
            Some(a.client.peer_id())
        )
    );
    b.client
        .validate(id, via, Validation::Accept)
        .await
        .unwrap();
    let (_, via_c, source_c, data_c) = next_gossip(&mut c, WAIT)
        .await
        .expect("c receives the accepted message");
    assert_eq!(
        (data_c.as_slice(), via_c, source_c),
        (
            &b"valid delta"[..],
            b.client.peer_id(),
            Some(a.client.peer_id())
        )
    );

    a.client
        .publish(Topic::Deltas, b"forged delta".to_vec())
        .await
        .unwrap();
    let (id, via, _, data) = next_gossip(&mut b, WAIT)
        .await
        .expect("b receives the forged message");
    assert_eq!(data, b"forged delta");
    b.client
        .validate(id, via, Validation::Reject)
        .await
        .unwrap();
    assert!(
        next_gossip(&mut c, Duration::from_secs(2)).await.is_none(),
        "a rejected message was forwarded"
    );
    assert!(a.client.stats().gossip_bytes_sent.load(Ordering::Relaxed) >= 23);
    drop(a.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_graylist_the_sender() {
    let attacker = start(NetConfig::loopback()).await;
    let mut victim = start(NetConfig::loopback()).await;
    victim.client.dial(attacker.addr.clone()).await.unwrap();
    wait_for_mesh(&victim.client, 1).await;
    let score = |peers: Vec<(PeerId, f64)>| {
        peers
            .iter()
            .find(|(p, _)| *p == attacker.client.peer_id())
            .map(|(_, s)| *s)
            .expect("still connected")
    };
    // Three rejected messages (10 × 3² = 90 points) take it below the graylist (-80).
    for i in 0..3u8 {
        publish_when_ready(&attacker.client, vec![b'x', i]).await;
        let (id, via, _, _) = next_gossip(&mut victim, WAIT)
            .await
            .expect("victim receives");
        victim
            .client
            .validate(id, via, Validation::Reject)
            .await
            .unwrap();
        if i == 0 {
            let s = score(victim.client.peers().await.unwrap());
            assert!(
                s < 0.0 && s > scoring::GRAYLIST_THRESHOLD,
                "one rejection: score {s}"
            );
        }
    }
    let s = score(victim.client.peers().await.unwrap());
    assert!(
        s < scoring::GRAYLIST_THRESHOLD,
        "score {s} not below the graylist"
    );
    // From now on the victim ignores the attacker: nothing more reaches the node.
    attacker
        .client
        .publish(Topic::Deltas, b"more spam".to_vec())
        .await
        .unwrap();
    assert!(
        next_gossip(&mut victim, Duration::from_secs(2))
            .await
            .is_none(),
        "graylisted peer still heard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_request_response_and_size_limit() {
    let a = start(NetConfig::loopback()).await;
    let mut b = start(NetConfig {
        max_sync_response: 1000,
        ..NetConfig::loopback()
    })
    .await;
    a.client.dial(b.addr.clone()).await.unwrap();
    let b_addr = b.addr.clone();
    // b answers every request with an echo, or with 20 kB for "big".
    let b_client = b.client.clone();
    tokio::spawn(async move {
        while let Some(ev) = b.events.recv().await {
            if let NetEvent::SyncRequest {
                request, channel, ..
            } = ev
            {
                let reply = if request == b"big" {
                    vec![7u8; 20_000]
                } else {
                    [b"re:".as_slice(), &request].concat()
                };
                b_client.respond(channel, reply).await.unwrap();
            }
        }
    });
    let peer_b = b.client.peer_id();
    let reply = a
        .client
        .request(peer_b, b"version 3".to_vec())
        .await
        .unwrap();
    assert_eq!(reply, b"re:version 3");
    // a's response limit is the default (16 MiB): 20 kB passes.
    assert_eq!(
        a.client
            .request(peer_b, b"big".to_vec())
            .await
            .unwrap()
            .len(),
        20_000
    );

    // A requester with a 1000-byte response limit fails cleanly on a larger answer.
    let small = start(NetConfig {
        max_sync_response: 1000,
        ..NetConfig::loopback()
    })
    .await;
    small.client.dial(b_addr).await.unwrap();
    let err = small
        .client
        .request(peer_b, b"big".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Request { .. }), "{err}");
    // ... and still gets answers within the limit.
    assert_eq!(
        small.client.request(peer_b, b"ok".to_vec()).await.unwrap(),
        b"re:ok"
    );
}
