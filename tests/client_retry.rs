//! `TransparentRetryLayer` against servers that misbehave on purpose, over real sockets and
//! in memory: every call the server turned away unprocessed is retried, the client sees no
//! error, and the server processes each request id exactly once.

mod client_support;

use client_support::tls::{start_tls, Before};
use client_support::*;
use std::time::Duration;

use h2::Reason;
use tower_drain::client::{RetryBudget, RetryReason, TransparentRetryLayer};

const CALLS: usize = 1000;
const CONCURRENCY: usize = 64;

async fn all_succeed_once(
    net: Net,
    plan: impl Fn(usize) -> ConnPlan + Send + Sync + 'static,
) -> TransparentRetryLayer {
    all_succeed_once_behind(net, plan, TransparentRetryLayer::default(), CALLS).await
}

/// Makes `calls` calls through `layer`: none fails, each is processed once.
async fn all_succeed_once_behind(
    net: Net,
    plan: impl Fn(usize) -> ConnPlan + Send + Sync + 'static,
    layer: TransparentRetryLayer,
    calls: usize,
) -> TransparentRetryLayer {
    let server = start(net, plan).await;
    let client = server.client(&layer);
    let (ids, failures) = run(&client, "call", calls, CONCURRENCY).await;
    assert!(
        failures.is_empty(),
        "{} failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(
        server.log.not_once(&ids),
        vec![],
        "processed other than once"
    );
    layer
}

async fn goaway_under_load_loses_nothing(net: Net) {
    // Every connection sends GOAWAY(NO_ERROR) naming its highest stream once 300 streams
    // have arrived, serves those, and closes: streams above it, and calls hyper still had
    // queued, were not processed.
    let layer = all_succeed_once(net, |_| ConnPlan::RawGoAway {
        after: 300,
        last: Last::Highest,
        reason: Reason::NO_ERROR,
    })
    .await;
    let stats = layer.stats();
    assert!(
        stats.total_retries() > 0,
        "no call was turned away: {stats:?}"
    );
}

#[tokio::test]
async fn goaway_under_64_way_load_loses_nothing_over_tcp() {
    goaway_under_load_loses_nothing(Net::Tcp).await;
}

#[tokio::test]
async fn goaway_under_64_way_load_loses_nothing_in_memory() {
    goaway_under_load_loses_nothing(Net::Memory).await;
}

async fn refused_streams_are_retried(net: Net) {
    let layer = all_succeed_once(net, |_| ConnPlan::Serve(StreamPlan::RefuseEvery(7))).await;
    let refused = layer.stats().retries(RetryReason::Refused);
    // Every 7th stream is refused, unless its call was refused before.
    assert!(refused >= (CALLS / 8) as u64, "{refused} refused retries");
}

#[tokio::test]
async fn every_7th_stream_refused_is_retried_over_tcp() {
    refused_streams_are_retried(Net::Tcp).await;
}

#[tokio::test]
async fn every_7th_stream_refused_is_retried_in_memory() {
    refused_streams_are_retried(Net::Memory).await;
}

async fn abrupt_goaway_below_open_streams_is_retried(net: Net) {
    // The first connection sends GOAWAY(last stream 0, NO_ERROR) once 16 streams are open.
    let layer = all_succeed_once(net, |i| match i {
        0 => ConnPlan::RawGoAway {
            after: 16,
            last: Last::Zero,
            reason: Reason::NO_ERROR,
        },
        _ => ConnPlan::Serve(StreamPlan::Normal),
    })
    .await;
    let above = layer.stats().retries(RetryReason::AboveGoAway);
    assert!(above >= 16, "{:?}", layer.stats());
}

#[tokio::test]
async fn abrupt_goaway_with_a_low_last_stream_is_retried_over_tcp() {
    abrupt_goaway_below_open_streams_is_retried(Net::Tcp).await;
}

#[tokio::test]
async fn abrupt_goaway_with_a_low_last_stream_is_retried_in_memory() {
    abrupt_goaway_below_open_streams_is_retried(Net::Memory).await;
}

async fn connections_closed_before_the_server_spoke_are_retried(net: Net) {
    // A balancer whose server is gone: its first three connections close at once.
    let layer = all_succeed_once(net, |i| match i {
        0..=2 => ConnPlan::CloseAtOnce,
        _ => ConnPlan::Serve(StreamPlan::Normal),
    })
    .await;
    let stats = layer.stats();
    let unsent =
        stats.retries(RetryReason::ClosedBeforePreface) + stats.retries(RetryReason::NotSent);
    assert!(unsent > 0, "{stats:?}");
}

#[tokio::test]
async fn a_balancer_closing_before_the_server_speaks_loses_nothing_over_tcp() {
    connections_closed_before_the_server_spoke_are_retried(Net::Tcp).await;
}

#[tokio::test]
async fn a_balancer_closing_before_the_server_speaks_loses_nothing_in_memory() {
    connections_closed_before_the_server_spoke_are_retried(Net::Memory).await;
}

async fn goaway_overtaken_by_a_reset_is_still_read(net: Net) {
    // Every connection, once 100 streams have arrived, sends GOAWAY(NO_ERROR) naming the last
    // stream it answered and, once the client has acknowledged it, closes with a reset while
    // the client still writes its later streams: the client must read the GOAWAY and the
    // answers it has received, not fail every stream on the write that met the reset. Whether
    // a write meets the reset before the GOAWAY is read is a race: 30 connections end so, each
    // with up to 64 calls above its last stream, and a call may be turned away by several in a
    // row: the budget and the retries are raised to let them all through.
    let budget = RetryBudget::new(1.0, 100, 1000);
    let layer = TransparentRetryLayer::default()
        .budget(budget)
        .max_refused_retries(10);
    let plan = |_| ConnPlan::RawGoAwayThenReset { after: 100 };
    let layer = all_succeed_once_behind(net, plan, layer, 3 * CALLS).await;
    let stats = layer.stats();
    assert!(stats.retries(RetryReason::AboveGoAway) > 0, "{stats:?}");
}

// One thread: over TCP the connection's task writes before its reactor has seen the reset
// (the socket's read readiness is stale), and hyper's dispatch does not race h2's connection
// task on another thread (a call it hands to h2 after the connection failed gets the I/O
// error, and cannot be told from one that was sent).
#[tokio::test]
async fn a_goaway_overtaken_by_a_reset_is_still_read_over_tcp() {
    goaway_overtaken_by_a_reset_is_still_read(Net::Tcp).await;
}

// Two workers: in memory the write meets the closed pipe only when the connection's task is
// writing on one thread while the server sends and closes on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goaway_overtaken_by_a_reset_is_still_read_in_memory() {
    goaway_overtaken_by_a_reset_is_still_read(Net::Memory).await;
}

#[tokio::test]
async fn calls_over_tonic_tls_above_the_preface_connector_succeed() {
    // tonic's `ClientTlsConfig` runs TLS above the connector: the connector must let the
    // handshake through instead of reading it as HTTP/2 frames.
    let server = start_tls(|_| Before::Serve).await;
    let layer = TransparentRetryLayer::default();
    let client = server.client(&layer);
    let calls = run(&client, "tls", 100, 8);
    let (ids, failures) = tokio::time::timeout(Duration::from_secs(20), calls)
        .await
        .expect("the TLS handshake stalled");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(server.log.not_once(&ids), vec![]);
    assert_eq!(layer.stats().total_retries(), 0);
}

#[tokio::test]
async fn tls_connections_closed_before_the_handshake_ended_are_retried() {
    // A balancer whose server is gone, under TLS: the first connection reads the
    // `ClientHello` and closes ("tls handshake eof"), the second closes at once.
    let server = start_tls(|i| match i {
        0 => Before::ReadThenClose,
        1 => Before::CloseAtOnce,
        _ => Before::Serve,
    })
    .await;
    let layer = TransparentRetryLayer::default();
    let client = server.client(&layer);
    let calls = run(&client, "tls", 100, 8);
    let (ids, failures) = tokio::time::timeout(Duration::from_secs(20), calls)
        .await
        .expect("the TLS handshake stalled");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(server.log.not_once(&ids), vec![]);
    let stats = layer.stats();
    assert!(stats.retries(RetryReason::ConnectFailed) > 0, "{stats:?}");
}
