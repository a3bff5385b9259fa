//! `TransparentRetryLayer` against servers that misbehave on purpose, over real sockets and
//! in memory: every call the server turned away unprocessed is retried, the client sees no
//! error, and the server processes each request id exactly once.

mod client_support;

use client_support::*;
use h2::Reason;
use tower_drain::client::{RetryReason, TransparentRetryLayer};

const CALLS: usize = 1000;
const CONCURRENCY: usize = 64;

async fn all_succeed_once(
    net: Net,
    plan: impl Fn(usize) -> ConnPlan + Send + Sync + 'static,
) -> TransparentRetryLayer {
    let server = start(net, plan).await;
    let layer = TransparentRetryLayer::default();
    let client = server.client(&layer);
    let (ids, failures) = run(&client, "call", CALLS, CONCURRENCY).await;
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
