//! Unit tests of the sequence, on paused time: they run instantly and the durations are exact.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::DrainLayer;

const NOTICE: Duration = Duration::from_secs(5);
const DRAIN: Duration = Duration::from_secs(10);
const TASKS: Duration = Duration::from_secs(3);
const OVERALL: Duration = Duration::from_secs(25);
const GRACE: Duration = crate::tracker::state::DEFAULT_HANDOFF_GRACE;

/// A builder with known durations (and no OS signals: tests share one process).
fn builder(drain: &DrainLayer) -> ShutdownBuilder {
    Shutdown::builder(drain)
        .notice_period(NOTICE)
        .drain_timeout(DRAIN)
        .tasks_timeout(TASKS)
        .overall_timeout(OVERALL)
}

fn layer() -> DrainLayer {
    DrainLayer::new(CancellationToken::new())
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, event: impl Into<String>) {
        self.0.lock().unwrap().push(event.into());
    }
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn logging_hook(shutdown: &mut Shutdown, log: &Log, name: &'static str) {
    let log = log.clone();
    shutdown.on_cleanup(name, Duration::from_secs(1), move || async move {
        log.push(name);
        Ok(())
    });
}

fn phases(report: &ShutdownReport) -> Vec<Phase> {
    report.phases.iter().map(|timing| timing.phase).collect()
}

#[tokio::test(start_paused = true)]
async fn clean_shutdown_runs_every_phase_in_order_and_exits_zero() {
    let drain = layer();
    let shutdown = builder(&drain).build().unwrap();
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(
        phases(&report),
        [Phase::Notice, Phase::Drain, Phase::Tasks, Phase::Cleanup]
    );
    assert!(report.phases.iter().all(|timing| timing.finished));
    assert_eq!(report.phase(Phase::Notice), Some(NOTICE));
    assert_eq!(report.trigger, ShutdownTrigger::Handle);
    assert!(report.is_clean());
    assert_eq!(report.exit_code(), 0);
    // No server was given: with nothing in flight, the drain waits out the handoff grace.
    assert_eq!(report.phase(Phase::Drain), Some(GRACE));
    assert_eq!(report.total, NOTICE + GRACE);
}

#[tokio::test(start_paused = true)]
async fn readiness_fails_at_the_trigger_and_requests_are_admitted_during_the_notice() {
    let drain = layer();
    let tracker = drain.tracker();
    let shutdown = builder(&drain).build().unwrap();
    let started = shutdown.started_token();
    shutdown.handle().trigger();
    let run = tokio::spawn(shutdown.run());
    started.cancelled().await;
    assert!(!tracker.is_ready(), "readiness fails at once");
    assert!(!tracker.is_draining(), "not refusing during the notice");
    // Admitted during the notice, and held so that the drain cannot end before the checks.
    let during_notice = tracker.guard().expect("admitted during the notice");
    tracker.draining().await;
    assert!(tracker.guard().is_none(), "refused once draining");
    drop(during_notice);
    let report = run.await.unwrap();
    assert_eq!(report.in_flight_at_trigger, 0);
    assert_eq!(report.completed, 1);
    assert_eq!(report.rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_requests_in_flight() {
    let drain = layer();
    let tracker = drain.tracker();
    let guard = tracker.guard().unwrap();
    let shutdown = builder(&drain).build().unwrap();
    shutdown.handle().trigger();
    let run = tokio::spawn(shutdown.run());
    tracker.draining().await;
    let drain_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!run.is_finished());
    drop(guard);
    let report = run.await.unwrap();
    assert_eq!(report.phase(Phase::Drain), Some(drain_started.elapsed()));
    assert_eq!(report.in_flight_at_trigger, 1);
    assert_eq!(report.completed, 1);
    assert_eq!(report.still_in_flight, 0);
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn drain_deadline_reports_requests_still_in_flight_and_exits_non_zero() {
    let drain = layer();
    let _hung = drain.tracker().guard().unwrap();
    let shutdown = builder(&drain).build().unwrap();
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(report.phase(Phase::Drain), Some(DRAIN));
    assert_eq!(report.still_in_flight, 1);
    assert_eq!(report.completed, 0);
    assert_eq!(
        phases(&report).last(),
        Some(&Phase::Cleanup),
        "the rest still runs"
    );
    assert_eq!(report.exit_code(), ShutdownReport::EXIT_INCOMPLETE);
}

#[tokio::test(start_paused = true)]
async fn cleanup_hooks_run_in_reverse_order_of_registration() {
    let drain = layer();
    let log = Log::default();
    let mut shutdown = builder(&drain).build().unwrap();
    for name in ["db-pool", "cache", "metrics"] {
        logging_hook(&mut shutdown, &log, name);
    }
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(log.events(), ["metrics", "cache", "db-pool"]);
    let names: Vec<_> = report.hooks.iter().map(|hook| hook.name.as_str()).collect();
    assert_eq!(names, ["metrics", "cache", "db-pool"]);
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn cleanup_hooks_run_after_requests_and_tasks_are_done() {
    let drain = layer();
    let tracker = drain.tracker();
    let log = Log::default();
    let mut shutdown = builder(&drain).build().unwrap();
    let guard = tracker.guard().unwrap();
    shutdown.spawn_task("worker", {
        let log = log.clone();
        |token| async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            log.push("worker done");
        }
    });
    logging_hook(&mut shutdown, &log, "db-pool");
    shutdown.handle().trigger();
    let run = tokio::spawn(shutdown.run());
    tracker.draining().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    log.push("request done");
    drop(guard);
    run.await.unwrap();
    assert_eq!(log.events(), ["request done", "worker done", "db-pool"]);
}

#[tokio::test(start_paused = true)]
async fn hung_hook_times_out_and_the_others_still_run() {
    let drain = layer();
    let log = Log::default();
    let mut shutdown = builder(&drain).build().unwrap();
    logging_hook(&mut shutdown, &log, "first");
    shutdown.on_cleanup("hung", Duration::from_secs(2), || async {
        std::future::pending::<()>().await;
        Ok(())
    });
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(report.hooks[0].name, "hung");
    assert_eq!(
        report.hooks[0].outcome,
        HookOutcome::TimedOut(Duration::from_secs(2))
    );
    assert_eq!(report.hooks[0].duration, Duration::from_secs(2));
    assert_eq!(log.events(), ["first"]);
    assert_eq!(report.hooks[1].outcome, HookOutcome::Ok);
    assert_eq!(report.exit_code(), ShutdownReport::EXIT_INCOMPLETE);
}

#[tokio::test(start_paused = true)]
async fn failing_hook_is_reported_with_a_non_zero_exit_code() {
    let drain = layer();
    let log = Log::default();
    let mut shutdown = builder(&drain).build().unwrap();
    logging_hook(&mut shutdown, &log, "first");
    shutdown.on_cleanup("broken", Duration::from_secs(1), || async {
        Err("connection reset".into())
    });
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(
        report.hooks[0].outcome,
        HookOutcome::Failed("connection reset".into())
    );
    assert_eq!(log.events(), ["first"]);
    assert_eq!(report.hooks_failed().count(), 1);
    assert_ne!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn panicking_hook_is_reported_and_the_others_still_run() {
    let drain = layer();
    let log = Log::default();
    let mut shutdown = builder(&drain).build().unwrap();
    logging_hook(&mut shutdown, &log, "first");
    shutdown.on_cleanup("panics", Duration::from_secs(1), || async {
        panic!("pool already closed")
    });
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(
        report.hooks[0].outcome,
        HookOutcome::Panicked("panicked: pool already closed".into())
    );
    assert_eq!(log.events(), ["first"]);
    assert_ne!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn tasks_are_cancelled_after_the_drain_and_awaited() {
    let drain = layer();
    let tracker = drain.tracker();
    let log = Log::default();
    let mut shutdown = builder(&drain).build().unwrap();
    shutdown.spawn_task("worker", {
        let log = log.clone();
        |token| async move {
            token.cancelled().await;
            log.push(format!("cancelled, drained: {}", tracker.is_drained()));
            tokio::time::sleep(Duration::from_secs(1)).await;
            log.push("finished");
        }
    });
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(
        log.events(),
        ["cancelled, drained: true", "finished"],
        "cancelled only after the drain, and awaited before the report"
    );
    assert_eq!(report.tasks_running, 1);
    assert!(report.tasks_aborted.is_empty());
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn task_ignoring_its_token_is_aborted_at_the_tasks_deadline() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
    shutdown.spawn_task("stubborn", |_token| async move {
        let _dropped = dropped_tx; // dropped when the task is aborted
        std::future::pending::<()>().await
    });
    shutdown.spawn_task("polite", |token| async move { token.cancelled().await });
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(report.phase(Phase::Tasks), Some(TASKS));
    assert_eq!(report.tasks_running, 2);
    assert_eq!(report.tasks_aborted, ["stubborn"]);
    assert!(dropped_rx.await.is_err(), "the task was aborted");
    assert_eq!(report.exit_code(), ShutdownReport::EXIT_INCOMPLETE);
}

#[tokio::test(start_paused = true)]
async fn second_signal_skips_the_rest_and_exits_with_its_code() {
    for (second, code) in [(Signal::Terminate, 143), (Signal::Interrupt, 130)] {
        let drain = layer();
        let tracker = drain.tracker();
        let _hung = tracker.guard().unwrap();
        let log = Log::default();
        let mut shutdown = builder(&drain).build().unwrap();
        logging_hook(&mut shutdown, &log, "db-pool");
        let handle = shutdown.handle();
        handle.signal(Signal::Terminate);
        let run = tokio::spawn(shutdown.run());
        tracker.draining().await;
        let at_signal = Instant::now();
        handle.signal(second);
        let report = run.await.unwrap();
        assert_eq!(at_signal.elapsed(), Duration::ZERO, "returns at once");
        assert_eq!(report.forced_by, Some(second));
        assert_eq!(report.exit_code(), code);
        assert_eq!(phases(&report), [Phase::Notice, Phase::Drain]);
        assert!(!report.phases[1].finished);
        assert_eq!(report.still_in_flight, 1);
        assert_eq!(report.hooks[0].outcome, HookOutcome::Skipped);
        assert!(log.events().is_empty(), "hooks skipped");
    }
}

#[tokio::test(start_paused = true)]
async fn second_signal_aborts_a_running_hook() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
    shutdown.on_cleanup("hung", Duration::from_secs(10), || async move {
        let _ = entered_tx.send(());
        std::future::pending::<()>().await;
        Ok(())
    });
    let handle = shutdown.handle();
    handle.signal(Signal::Interrupt);
    let run = tokio::spawn(shutdown.run());
    entered_rx.await.unwrap();
    handle.signal(Signal::Interrupt);
    let report = run.await.unwrap();
    assert_eq!(report.hooks[0].outcome, HookOutcome::Interrupted);
    assert_eq!(report.exit_code(), 130);
}

#[tokio::test(start_paused = true)]
async fn first_signal_after_a_non_signal_trigger_does_not_force() {
    let drain = layer();
    let _hung = drain.tracker().guard().unwrap();
    let shutdown = builder(&drain).build().unwrap();
    let handle = shutdown.handle();
    handle.trigger();
    handle.signal(Signal::Terminate);
    let report = shutdown.run().await;
    assert_eq!(report.forced_by, None);
    assert_eq!(
        report.phase(Phase::Drain),
        Some(DRAIN),
        "ran to the drain deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn second_signal_after_a_non_signal_trigger_forces() {
    let drain = layer();
    let shutdown = builder(&drain).build().unwrap();
    let handle = shutdown.handle();
    handle.trigger();
    handle.signal(Signal::Terminate);
    handle.signal(Signal::Interrupt);
    let report = shutdown.run().await;
    assert_eq!(report.forced_by, Some(Signal::Interrupt));
    assert_eq!(report.exit_code(), 130);
}

#[tokio::test(start_paused = true)]
async fn overall_deadline_bounds_the_whole_sequence() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    shutdown.on_cleanup("slow", OVERALL, || async {
        tokio::time::sleep(OVERALL).await;
        Ok(())
    });
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
    shutdown.spawn_task("never-started", |_token| async move {
        let _dropped = dropped_tx; // dropped when the task is aborted
        std::future::pending::<()>().await
    });
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert!(report.overall_deadline_hit);
    assert_eq!(report.total, OVERALL);
    assert_eq!(report.hooks[0].outcome, HookOutcome::Interrupted);
    assert_eq!(report.exit_code(), ShutdownReport::EXIT_INCOMPLETE);
    assert_eq!(report.tasks_aborted, ["never-started"]);
    assert!(dropped_rx.await.is_err(), "the task was aborted");
}

#[tokio::test(start_paused = true)]
async fn trigger_future_starts_the_shutdown() {
    let drain = layer();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = builder(&drain)
        .trigger(std::future::pending())
        .trigger(async move {
            let _ = rx.await;
        })
        .build()
        .unwrap();
    let run = tokio::spawn(shutdown.run());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!run.is_finished(), "waits for a trigger");
    tx.send(()).unwrap();
    let report = run.await.unwrap();
    assert_eq!(report.trigger, ShutdownTrigger::Future(1));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_drain_token_directly_starts_the_shutdown_without_notice() {
    let drain = layer();
    let shutdown = builder(&drain).build().unwrap();
    drain.token().cancel();
    let report = shutdown.run().await;
    assert_eq!(report.trigger, ShutdownTrigger::DrainToken);
    assert_eq!(report.phase(Phase::Notice), Some(Duration::ZERO));
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn report_display_names_the_trigger_counts_and_hooks() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    shutdown.on_cleanup("db-pool", Duration::from_secs(1), || async { Ok(()) });
    shutdown.handle().signal(Signal::Terminate);
    let text = shutdown.run().await.to_string();
    assert!(text.contains("trigger SIGTERM"), "{text}");
    assert!(text.contains("exit code 0"), "{text}");
    assert!(text.contains("0 in flight at trigger"), "{text}");
    assert!(text.contains("cleanup db-pool: ok"), "{text}");
}

fn build_error(builder: ShutdownBuilder) -> ShutdownConfigError {
    builder.build().map(|_| ()).unwrap_err()
}

#[tokio::test]
async fn zero_deadlines_are_refused_at_build_time() {
    let drain = layer();
    let cases = [
        (
            builder(&drain).drain_timeout(Duration::ZERO),
            "drain_timeout",
        ),
        (
            builder(&drain).tasks_timeout(Duration::ZERO),
            "tasks_timeout",
        ),
        (
            builder(&drain).overall_timeout(Duration::ZERO),
            "overall_timeout",
        ),
    ];
    for (builder, expected) in cases {
        match build_error(builder) {
            ShutdownConfigError::ZeroTimeout { name } => assert_eq!(name, expected),
            other => panic!("expected ZeroTimeout for {expected}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn notice_not_below_the_overall_deadline_is_refused() {
    let err = build_error(builder(&layer()).notice_period(OVERALL));
    assert!(
        matches!(err, ShutdownConfigError::NoticeNotBelowOverall { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("notice period"), "{err}");
}

#[tokio::test]
async fn phases_that_leave_no_time_for_cleanup_are_refused() {
    // notice + drain == overall: a drain that runs to its deadline would skip every hook.
    let err = build_error(
        builder(&layer())
            .tasks_timeout(Duration::from_secs(1))
            .drain_timeout(OVERALL - NOTICE),
    );
    assert!(
        matches!(err, ShutdownConfigError::NoTimeForCleanup { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("cleanup hooks"), "{err}");
    let err = build_error(builder(&layer()).tasks_timeout(OVERALL - NOTICE - DRAIN));
    assert!(
        matches!(err, ShutdownConfigError::NoTimeForCleanup { .. }),
        "{err:?}"
    );
    let err = build_error(builder(&layer()).tasks_timeout(OVERALL));
    assert!(
        matches!(err, ShutdownConfigError::NoTimeForCleanup { .. }),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn hooks_still_run_when_the_drain_runs_to_its_deadline() {
    let drain = layer();
    let _hung = drain.tracker().guard().unwrap();
    let mut shutdown = builder(&drain).build().unwrap();
    let log = Log::default();
    logging_hook(&mut shutdown, &log, "db-pool");
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(report.phase(Phase::Drain), Some(DRAIN));
    assert_eq!(log.events(), ["db-pool"], "the pool is closed");
    assert!(!report.overall_deadline_hit);
}

#[test]
fn build_outside_a_runtime_is_an_error_not_a_panic() {
    let err = build_error(builder(&layer()));
    assert!(matches!(err, ShutdownConfigError::NoRuntime), "{err:?}");
}

#[tokio::test]
async fn defaults_are_valid_and_fit_kubernetes_default_grace_period() {
    let drain = layer();
    let builder = Shutdown::builder(&drain);
    assert!(builder.build().is_ok());
    assert!(DEFAULT_OVERALL_TIMEOUT < Duration::from_secs(30));
    assert!(
        Duration::from_secs(5) + DEFAULT_DRAIN_TIMEOUT < DEFAULT_OVERALL_TIMEOUT,
        "a 5 s notice period fits the defaults"
    );
}

#[tokio::test]
#[should_panic(expected = "must be greater than zero")]
async fn zero_hook_timeout_panics_at_registration() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    shutdown.on_cleanup("db-pool", Duration::ZERO, || async { Ok(()) });
}

/// A server future as `with_graceful_shutdown` builds one: serves until the drain token is
/// cancelled, then takes `goodbye` to close its connections.
async fn server(token: CancellationToken, goodbye: Duration) -> std::io::Result<()> {
    token.cancelled().await;
    tokio::time::sleep(goodbye).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_the_server_to_close_its_connections_then_closes_admission() {
    let drain = layer();
    let tracker = drain.tracker();
    let mut shutdown = builder(&drain).build().unwrap();
    let goodbye = Duration::from_secs(3);
    shutdown.spawn_server("http", server(drain.token().clone(), goodbye));
    shutdown.handle().trigger();
    let run = tokio::spawn(shutdown.run());
    tracker.draining().await;
    // During the server's goodbye the handoff is admitted, past the grace too.
    tokio::time::sleep(GRACE * 2).await;
    assert!(!tracker.is_closed());
    assert!(
        tracker.guard().is_none(),
        "no new non-request work once draining"
    );
    let report = run.await.unwrap();
    assert!(tracker.is_closed());
    assert_eq!(report.phase(Phase::Drain), Some(goodbye));
    assert_eq!(report.servers.len(), 1);
    assert_eq!(report.servers[0].name, "http");
    assert_eq!(report.servers[0].outcome, ServerOutcome::Closed);
    assert_eq!(report.servers[0].closed_after, Some(goodbye));
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn server_that_closes_at_once_ends_the_drain_without_the_grace() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    shutdown.spawn_server("http", server(drain.token().clone(), Duration::ZERO));
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(report.phase(Phase::Drain), Some(Duration::ZERO));
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn server_still_open_at_the_drain_deadline_is_cut_and_the_exit_code_is_one() {
    let drain = layer();
    let tracker = drain.tracker();
    let mut shutdown = builder(&drain).build().unwrap();
    let log = Log::default();
    logging_hook(&mut shutdown, &log, "db-pool");
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
    shutdown.spawn_server("http", async move {
        let _dropped = dropped_tx; // a response still being written
        std::future::pending::<std::io::Result<()>>().await
    });
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert_eq!(report.phase(Phase::Drain), Some(DRAIN));
    assert_eq!(report.servers[0].outcome, ServerOutcome::Cut);
    assert!(tracker.is_closed(), "nothing is admitted past the deadline");
    assert!(dropped_rx.await.is_err(), "the server was aborted");
    assert_eq!(
        log.events(),
        ["db-pool"],
        "the rest of the sequence still runs"
    );
    assert!(!report.is_clean());
    assert_eq!(report.exit_code(), ShutdownReport::EXIT_INCOMPLETE);
    let text = report.to_string();
    assert!(text.contains("server http: cut"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn server_ending_before_the_shutdown_starts_it_and_is_reported() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    shutdown.spawn_server("grpc", server(drain.token().clone(), Duration::ZERO));
    shutdown.spawn_server("http", async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Err(std::io::Error::other("accept failed"))
    });
    let report = shutdown.run().await;
    assert_eq!(report.trigger, ShutdownTrigger::Server(1));
    assert_eq!(report.servers[0].outcome, ServerOutcome::Closed);
    assert_eq!(
        report.servers[1].outcome,
        ServerOutcome::Failed("accept failed".into())
    );
    assert_eq!(report.exit_code(), ShutdownReport::EXIT_INCOMPLETE);
}

#[tokio::test(start_paused = true)]
async fn second_signal_cuts_the_servers_at_once() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    shutdown.spawn_server("http", std::future::pending::<std::io::Result<()>>());
    let handle = shutdown.handle();
    handle.signal(Signal::Terminate);
    let run = tokio::spawn(shutdown.run());
    tokio::time::sleep(NOTICE + Duration::from_secs(1)).await;
    let forced = Instant::now();
    handle.signal(Signal::Interrupt);
    let report = run.await.unwrap();
    assert_eq!(forced.elapsed(), Duration::ZERO);
    assert_eq!(report.servers[0].outcome, ServerOutcome::Cut);
    assert_eq!(report.exit_code(), 130);
}

#[tokio::test(start_paused = true)]
async fn second_signal_during_the_tasks_phase_keeps_what_finished_before_it() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    let log = Log::default();
    logging_hook(&mut shutdown, &log, "db-pool");
    let (cancelled_tx, cancelled_rx) = tokio::sync::oneshot::channel();
    shutdown.spawn_task("stubborn", |token| async move {
        token.cancelled().await;
        let _ = cancelled_tx.send(());
        std::future::pending::<()>().await
    });
    let handle = shutdown.handle();
    handle.signal(Signal::Terminate);
    let run = tokio::spawn(shutdown.run());
    cancelled_rx.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.signal(Signal::Terminate);
    let report = run.await.unwrap();
    assert_eq!(report.forced_by, Some(Signal::Terminate));
    assert_eq!(phases(&report), [Phase::Notice, Phase::Drain, Phase::Tasks]);
    assert!(report.phases[0].finished && report.phases[1].finished);
    assert!(!report.phases[2].finished);
    assert_eq!(report.phase(Phase::Drain), Some(GRACE));
    assert_eq!(report.phase(Phase::Tasks), Some(Duration::from_secs(1)));
    assert_eq!(report.tasks_running, 1);
    assert_eq!(report.tasks_aborted, ["stubborn"]);
    assert_eq!(report.still_in_flight, 0);
    assert_eq!(report.hooks[0].outcome, HookOutcome::Skipped);
    assert!(log.events().is_empty(), "hooks skipped");
}

#[tokio::test(start_paused = true)]
async fn overall_deadline_during_the_cleanup_keeps_the_hooks_that_ended() {
    let drain = layer();
    let mut shutdown = builder(&drain).build().unwrap();
    let log = Log::default();
    logging_hook(&mut shutdown, &log, "skipped");
    shutdown.on_cleanup("hung", OVERALL, || async {
        std::future::pending::<()>().await;
        Ok(())
    });
    logging_hook(&mut shutdown, &log, "first");
    shutdown.handle().trigger();
    let report = shutdown.run().await;
    assert!(report.overall_deadline_hit);
    let hooks: Vec<_> = report
        .hooks
        .iter()
        .map(|hook| (hook.name.as_str(), hook.outcome.clone()))
        .collect();
    assert_eq!(
        hooks,
        [
            ("first", HookOutcome::Ok),
            ("hung", HookOutcome::Interrupted),
            ("skipped", HookOutcome::Skipped),
        ]
    );
    assert_eq!(report.hooks[1].duration, OVERALL - NOTICE - GRACE);
    assert_eq!(log.events(), ["first"]);
    assert_eq!(phases(&report).last(), Some(&Phase::Cleanup));
    assert!(!report.phases.last().unwrap().finished);
}
