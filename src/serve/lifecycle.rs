//! [`Lifecycle`]: when a connection is told to leave. The moments of its life (the announce,
//! the drain, its first request, its maximum age, the end of the wait for a late first
//! request) are [`Event`]s; what the connection's task must do at each is an [`Action`]. No
//! I/O here: the task (`connection.rs`) waits for the events and carries out the actions.
//!
//! HTTP/1.x and HTTP/2 differ. An HTTP/2 connection can be told to leave at any moment
//! (graceful `GOAWAY`), so it is told at the announce, or after its first request if it was
//! accepted during the notice. An HTTP/1.x connection can only be told with a response
//! (`Connection: close`, put on by `Leave` from the announce on), and
//! closing it between requests races the client's next one: it is closed only at the drain,
//! once idle, or once its first request has had a little time to arrive
//! (`LATE_FIRST_REQUEST`, in `connection.rs`).

use super::protocol::Protocol;

/// Where a connection stands, for its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lifecycle {
    protocol: Protocol,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Served. To be told to leave at the announce (HTTP/2), at its maximum age (HTTP/2) or
    /// at the drain.
    Serving,
    /// HTTP/2, accepted during the notice: told to leave after its first request (or at the
    /// drain or its age, whichever comes first).
    AwaitingFirstRequest,
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
    /// The connection's first request arrived.
    FirstRequest,
    /// The connection reached its maximum age.
    Aged,
    /// The wait for a late first request ([`Action::AwaitLateFirstRequest`]) is over.
    LateFirstRequestDue,
}

/// What the connection's task does at an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Nothing, for now.
    Wait,
    /// Tell the connection to leave: HTTP/2 `GOAWAY`; HTTP/1.x closes once its response in
    /// progress is written, at once if idle. Counted as told to leave. Asked once at most.
    TellToLeave,
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
        let stage = if during_notice && protocol == Protocol::Http2 {
            Stage::AwaitingFirstRequest
        } else {
            // HTTP/1.x accepted during the notice: its first response says goodbye.
            Stage::Serving
        };
        Self { protocol, stage }
    }

    /// Whether the task still waits for `event`: no event that can change nothing is awaited.
    /// (The timers, `Aged` and `LateFirstRequestDue`, are armed by the task, once.)
    pub(super) fn awaits(&self, event: Event) -> bool {
        match event {
            Event::Announce => self.protocol == Protocol::Http2 && self.stage == Stage::Serving,
            Event::Drain => matches!(self.stage, Stage::Serving | Stage::AwaitingFirstRequest),
            Event::FirstRequest => self.stage == Stage::AwaitingFirstRequest,
            Event::Aged | Event::LateFirstRequestDue => true,
        }
    }

    /// What to do at `event`; `had_request` says whether the connection's service has been
    /// called yet.
    pub(super) fn on(&mut self, event: Event, had_request: bool) -> Action {
        let http2 = self.protocol == Protocol::Http2;
        match (event, self.stage) {
            (_, Stage::Leaving) => Action::Wait,
            (Event::Announce, Stage::Serving) if http2 => self.tell_to_leave(),
            (Event::FirstRequest, Stage::AwaitingFirstRequest) => self.tell_to_leave(),
            // HTTP/1.x: `Leave` puts `Connection: close` on its next response.
            (Event::Aged, Stage::Serving | Stage::AwaitingFirstRequest) if http2 => {
                self.tell_to_leave()
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
            (Event::Drain, Stage::Serving | Stage::AwaitingFirstRequest) => self.tell_to_leave(),
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
    fn http2_accepted_during_the_notice_is_told_after_its_first_request() {
        let events = [(Announce, false), (FirstRequest, true), (Drain, true)];
        assert_eq!(run(Http2, true, &events), [TellToLeave]);
    }

    #[test]
    fn http2_accepted_during_the_notice_without_a_request_is_told_at_the_drain() {
        let events = [(Announce, false), (Drain, false), (FirstRequest, true)];
        assert_eq!(run(Http2, true, &events), [TellToLeave]);
    }

    #[test]
    fn http2_is_told_to_leave_at_its_maximum_age() {
        assert_eq!(run(Http2, false, &[(Aged, true)]), [TellToLeave]);
        assert_eq!(run(Http2, true, &[(Aged, false)]), [TellToLeave]);
    }

    #[test]
    fn http1_is_not_told_before_the_drain_its_responses_say_goodbye() {
        let events = [(Announce, true), (FirstRequest, true), (Aged, true)];
        assert_eq!(run(Http1, true, &events), [Wait]);
        assert!(!Lifecycle::new(Http1, false).awaits(Announce));
    }

    #[test]
    fn http1_with_a_request_is_told_to_leave_at_the_drain() {
        let events = [(Announce, true), (Drain, true), (LateFirstRequestDue, true)];
        assert_eq!(run(Http1, false, &events), [TellToLeave, Wait]);
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
    fn the_drain_is_not_awaited_once_told_to_leave() {
        let mut life = Lifecycle::new(Http2, false);
        assert!(life.awaits(Drain));
        assert_eq!(life.on(Announce, false), TellToLeave);
        assert!(!life.awaits(Drain));
        assert!(!life.awaits(Announce));
    }
}
