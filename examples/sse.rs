//! Server-sent events that end themselves when the drain starts.
//!
//! ```sh
//! cargo run --all-features --example sse   # then, in another terminal:
//! curl -N 127.0.0.1:3000/events           # and press Ctrl-C in the first one
//! ```
//!
//! A long stream never ends on its own, so a drain would wait for it until the deadline
//! (axum #2673). Here the layer is built with `with_tracker_extension()`, which puts
//! the `ConnectionTracker` into every admitted request; the handler extracts it with
//! `Extension<ConnectionTracker>` and, once draining starts, sends a last `bye` event and ends the
//! stream. The client sees a clean end (and reconnects elsewhere, as `EventSource` does); the
//! drain finishes at once instead of at its deadline.
//!
//! `ADDR` (default `127.0.0.1:3000`), `NOTICE_MS` (default 1000), `DRAIN_TIMEOUT_MS` (default
//! 10000); bad values exit with code 2 (`support/env.rs`).

#[path = "support/env.rs"]
mod env;

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::stream::{self, Stream};
use tower_drain::{BoxError, ConnectionTracker, DrainLayer, Shutdown, ShutdownReport};

/// Where the stream is: ticking, or past its last event.
enum State {
    Ticking(u64),
    Bye,
}

/// One event a second, until the drain starts; then `bye`, and the end of the stream.
async fn events(
    Extension(tracker): Extension<ConnectionTracker>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = stream::unfold(State::Ticking(0), move |state| {
        let tracker = tracker.clone();
        async move {
            match state {
                State::Ticking(n) => {
                    let wait = if n == 0 {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(1)
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {
                            let event = Event::default().event("tick").data(n.to_string());
                            Some((Ok(event), State::Ticking(n + 1)))
                        }
                        () = tracker.draining() => {
                            let event = Event::default()
                                .event("bye")
                                .data("server shutting down, reconnect");
                            Some((Ok(event), State::Bye))
                        }
                    }
                }
                State::Bye => None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[tokio::main]
async fn main() -> Result<ShutdownReport, BoxError> {
    env::init_tracing(); // the shutdown logs its phases and its report
    let settings = env::Settings::from_env(3000);

    let drain = DrainLayer::default()
        .readiness_path("/readyz")
        .liveness_path("/livez")
        .with_tracker_extension();
    let mut shutdown = Shutdown::builder(&drain)
        .signals() // SIGTERM and SIGINT start the shutdown; a second one forces the exit
        .notice_period(settings.notice)
        .drain_timeout(settings.drain_timeout)
        .overall_timeout(settings.notice + settings.drain_timeout + Duration::from_secs(8))
        .build()?;
    let app = Router::new()
        .route("/events", get(events))
        .layer(drain.clone());

    let listener = tower_drain::serve::bind(settings.addr.tcp()).await?; // a backlog of 1024, not 128
    let bound = listener.local_addr()?;
    println!("listening on {bound}");
    tracing::info!("try: curl -N http://{bound}/events, then send SIGTERM or press Ctrl-C");
    let drain_begins = drain.token().clone().cancelled_owned();
    shutdown.spawn_server(
        "http",
        axum::serve(listener, app).with_graceful_shutdown(drain_begins),
    );

    Ok(shutdown.run().await) // logs the report; main exits with its code
}
