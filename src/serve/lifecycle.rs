//! [`Lifecycle`]: when a connection is told to leave. The moments of its life (the announce,
//! the drain, its maximum age, the end of the wait for a late first request) are [`Event`]s;
//! what the connection's task must do at each is an [`Action`]. No I/O here: the task
//! (`connection.rs`) waits for the events and carries out the actions.
//!
//! **Open at the announce:** told to leave at once. HTTP/2 can be told at any moment
//! (graceful `GOAWAY`); HTTP/1.x only with a response, since closing between requests races
//! the client's next one. HTTP/1.x does not wait for the task to see the announce: `Leave`
//! reads the tracker when each response is ready, and puts `Connection: close` on every
//! response from the announce on (a request that arrives with the announce would otherwise
//! race the task, and its response keep the connection alive).
//!
//! **Accepted during the notice:** HTTP/2 is served as the framework's own server serves every
//! connection, and told to leave at the drain (or at its maximum age). Such a connection comes
//! from a load balancer that has not yet seen readiness fail, or from a client that was just
//! told to leave and came back: telling it to leave again sends it back again, and each round
//! trip refuses the streams it had in flight. Keeping it until the drain costs nothing: the
//! drain tells it then, as the framework's server does. (HTTP/1.x responses carry
//! `Connection: close` from the announce on, on every connection, as the layer's do whatever
//! the server: that refuses nothing, the next request is served on the next connection.)
//!
//! **At the drain:** HTTP/2 `GOAWAY`; HTTP/1.x idle connections close, busy ones after their
//! response, and one whose first request is still arriving gets a little time
//! (`LATE_FIRST_REQUEST`, in `connection.rs`).

use super::protocol::Protocol;

/// Where a connection stands, for its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lifecycle {
    protocol: Protocol,
    stage: Stage,
    /// Open when the shutdown was announced, or before: told to leave at the announce.
    awaits_announce: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Served; to be told to leave at the announce (if open then), its maximum age or the
    /// drain. An HTTP/1.x connection stays here after being told with its responses, until
    /// the drain.
    Serving,
    /// HTTP/1.x without a request when the drain began: its first request may be on the wire,
    /// and is served if it comes in time; the connection is closed otherwise.
    LateFirstRequest,
    /// Told to leave, or served its last request: only its end is awaited (or the end of
    /// its grace, once past its maximum age).
    Leaving,
}

/// A moment of a connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// Shutdown announced: the notice period begins.
    Announce,
    /// The drain began.
    Drain,
    /// The connection reached its maximum age.
    Aged,
    /// The wait for a late first request ([`Action::AwaitLateFirstRequest`]) is over.
    LateFirstRequestDue,
    /// The header read timeout passed before the connection's first request.
    FirstRequestDue,
}

/// What the connection's task does at an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Nothing, for now.
    Wait,
    /// Tell the connection to leave: HTTP/2 `GOAWAY`; HTTP/1.x closes once its response in
    /// progress is written, at once if idle. Counted as told to leave. Asked once at most.
    TellToLeave,
    /// HTTP/1.x at its maximum age: put `Connection: close` on the connection's responses
    /// from now on. (From the announce on, `Leave` puts it on by itself.)
    LeaveOnNextResponse,
    /// Give the connection's first request a little time to arrive, then send
    /// [`Event::LateFirstRequestDue`].
    AwaitLateFirstRequest,
    /// Close the connection, which never sent a request: it was never served, so it is not
    /// counted as told to leave.
    CloseUnserved,
}

impl Lifecycle {
    /// A connection just accepted, `during_notice` if the shutdown was already announced.
    pub(super) fn new(protocol: Protocol, during_notice: bool) -> Self {
        Self {
            protocol,
            stage: Stage::Serving,
            awaits_announce: !during_notice,
        }
    }

    /// Whether the task still waits for `event`: no event that can change nothing is awaited.
    /// (The timers, `Aged` and `LateFirstRequestDue`, are armed by the task, once.)
    pub(super) fn awaits(&self, event: Event) -> bool {
        match event {
            // HTTP/1.x: `Leave` reads the announce itself, response by response.
            Event::Announce => {
                self.protocol == Protocol::Http2
                    && self.awaits_announce
                    && self.stage == Stage::Serving
            }
            Event::Drain => self.stage == Stage::Serving,
            Event::Aged | Event::LateFirstRequestDue | Event::FirstRequestDue => true,
        }
    }

    /// What to do at `event`; `had_request` says whether the connection's service has been
    /// called yet.
    pub(super) fn on(&mut self, event: Event, had_request: bool) -> Action {
        let http2 = self.protocol == Protocol::Http2;
        match (event, self.stage) {
            (_, Stage::Leaving) => Action::Wait,
            (Event::Announce | Event::Aged, Stage::Serving) => {
                self.awaits_announce = false;
                if http2 {
                    self.tell_to_leave()
                } else {
                    Action::LeaveOnNextResponse
                }
            }
            // No request yet, but the first may be on the wire: hyper would close the
            // connection unread. Serve it (its response carries `Connection: close`), and
            // close only if none comes soon.
            (Event::Drain, Stage::Serving) if !http2 && !had_request => {
                self.stage = Stage::LateFirstRequest;
                Action::AwaitLateFirstRequest
            }
            // HTTP/1.x: idle connections close, busy ones after their response. HTTP/2:
            // `GOAWAY`.
            (Event::Drain, Stage::Serving) => self.tell_to_leave(),
            // Never served, in time: closed, as the drain would close it.
            (Event::FirstRequestDue, _) if !had_request => {
                self.stage = Stage::Leaving;
                Action::CloseUnserved
            }
            (Event::LateFirstRequestDue, Stage::LateFirstRequest) => {
                self.stage = Stage::Leaving;
                if had_request {
                    // Served; its response carries `Connection: close`.
                    Action::Wait
                } else {
                    Action::CloseUnserved
                }
            }
            _ => Action::Wait,
        }
    }

    fn tell_to_leave(&mut self) -> Action {
        self.stage = Stage::Leaving;
        Action::TellToLeave
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Event::*;
    use Protocol::{Http1, Http2};

    /// The actions a connection takes through `events`, skipping the events it no longer
    /// awaits, as its task does.
    fn run(protocol: Protocol, during_notice: bool, events: &[(Event, bool)]) -> Vec<Action> {
        let mut life = Lifecycle::new(protocol, during_notice);
        let mut actions = Vec::new();
        for &(event, had_request) in events {
            if life.awaits(event) {
                actions.push(life.on(event, had_request));
            }
        }
        actions
    }

    #[test]
    fn http2_is_told_to_leave_once_at_the_announce() {
        let events = [(Announce, true), (Aged, true), (Drain, true)];
        assert_eq!(run(Http2, false, &events), [TellToLeave, Wait]);
    }

    #[test]
    fn http2_accepted_during_the_notice_is_told_at_the_drain_not_after_its_first_request() {
        let events = [(Announce, true), (Drain, true)];
        assert_eq!(run(Http2, true, &events), [TellToLeave]);
        assert!(!Lifecycle::new(Http2, true).awaits(Announce));
    }

    #[test]
    fn http2_is_told_to_leave_at_its_maximum_age() {
        assert_eq!(run(Http2, false, &[(Aged, true)]), [TellToLeave]);
        assert_eq!(run(Http2, true, &[(Aged, false)]), [TellToLeave]);
    }

    #[test]
    fn http1_does_not_await_the_announce_its_responses_carry_it_and_it_closes_at_the_drain() {
        let events = [(Announce, true), (Aged, true), (Drain, true)];
        assert_eq!(
            run(Http1, false, &events),
            [LeaveOnNextResponse, TellToLeave]
        );
        assert_eq!(
            run(Http1, true, &events),
            [LeaveOnNextResponse, TellToLeave]
        );
        assert!(!Lifecycle::new(Http1, false).awaits(Announce));
    }

    #[test]
    fn http1_at_its_maximum_age_says_goodbye_on_its_next_response() {
        assert_eq!(run(Http1, false, &[(Aged, true)]), [LeaveOnNextResponse]);
    }

    #[test]
    fn http1_without_a_request_at_the_drain_is_given_time_for_a_late_first_request() {
        let served = [(Drain, false), (LateFirstRequestDue, true)];
        assert_eq!(run(Http1, false, &served), [AwaitLateFirstRequest, Wait]);
        let silent = [(Drain, false), (LateFirstRequestDue, false)];
        assert_eq!(
            run(Http1, false, &silent),
            [AwaitLateFirstRequest, CloseUnserved]
        );
    }

    #[test]
    fn a_connection_without_a_request_within_the_header_read_timeout_is_closed_unserved() {
        assert_eq!(
            run(Http1, false, &[(FirstRequestDue, false)]),
            [CloseUnserved]
        );
        assert_eq!(
            run(Http2, false, &[(FirstRequestDue, false)]),
            [CloseUnserved]
        );
        assert_eq!(run(Http1, false, &[(FirstRequestDue, true)]), [Wait]);
    }

    #[test]
    fn the_drain_is_not_awaited_once_told_to_leave() {
        let mut life = Lifecycle::new(Http2, false);
        assert!(life.awaits(Drain));
        assert_eq!(life.on(Announce, false), TellToLeave);
        assert!(!life.awaits(Drain));
        assert!(!life.awaits(Announce));
    }
}
