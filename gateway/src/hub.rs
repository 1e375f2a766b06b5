//! Event fan-out. One task owns every subscription, so ordering questions have one answer: a
//! subscriber sees messages in the order the hub handled them. Delivery never waits on a
//! subscriber: a full buffer marks it overflowed, its events are dropped and counted, and once it
//! has room again it gets `Resync` (list again) before anything else — never a silent gap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::EventMessage;
use rdd_proto::v1::{
    ConnectionState, Event, Resync, SubscribeResponse, Synced, connection_state, resync,
    subscribe_response::Message,
};
use tokio::sync::mpsc;
use tonic::Status;

use crate::engine::ConnState;
use crate::metrics::Metrics;
use crate::selector::Selector;

/// Event types Docker emits; a subscription naming anything else is a mistake.
pub const EVENT_TYPES: &[&str] = &[
    "builder",
    "config",
    "container",
    "daemon",
    "image",
    "network",
    "node",
    "plugin",
    "secret",
    "service",
    "volume",
];

pub type Outbox = mpsc::Sender<Result<SubscribeResponse, Status>>;

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub types: Vec<String>,
    pub actions: Vec<String>,
    pub selector: Selector,
}

impl Filter {
    pub fn new(types: Vec<String>, actions: Vec<String>, selector: &str) -> Result<Filter, String> {
        for t in &types {
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(format!(
                    "unknown event type {t:?}; valid types: {}",
                    EVENT_TYPES.join(", ")
                ));
            }
        }
        if actions.iter().any(|a| a.trim().is_empty()) {
            return Err("empty action in filter".into());
        }
        Ok(Filter {
            types,
            actions,
            selector: Selector::parse(selector)?,
        })
    }

    fn matches(&self, ev: &Event) -> bool {
        (self.types.is_empty() || self.types.contains(&ev.r#type))
            && (self.actions.is_empty()
                || self.actions.iter().any(|a| {
                    // `exec_start: sh -c …` and `health_status: healthy` carry details after
                    // a colon; a filter ending in `:` matches them all.
                    *a == ev.action || (a.ends_with(':') && ev.action.starts_with(a.as_str()))
                }))
            && self.selector.matches(&ev.attributes)
    }
}

pub struct Subscription {
    pub name: String,
    pub filter: Filter,
    pub tx: Outbox,
}

pub enum HubMsg {
    State(ConnState),
    Event(Box<EventMessage>, u64),
    Subscribe(Subscription),
}

struct Sub {
    name: String,
    filter: Filter,
    tx: Outbox,
    /// Has seen `Synced`; later continuity breaks are announced with `Resync`.
    synced: bool,
    /// Events dropped since the buffer overflowed; `Some` while overflowed.
    dropped: Option<u64>,
    closed: bool,
}

impl Sub {
    /// Queue `m` without waiting; on a full buffer switch to overflowed.
    fn deliver(&mut self, m: Message, metrics: &Metrics) {
        if self.closed {
            return;
        }
        if let Some(d) = self.dropped.as_mut() {
            if matches!(m, Message::Event(_)) {
                *d += 1;
                metrics.event_dropped();
            }
            return;
        }
        let is_event = matches!(m, Message::Event(_));
        match self.tx.try_send(Ok(SubscribeResponse { message: Some(m) })) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(subscriber = %self.name, "subscriber buffer overflowed; it will be told to resync");
                self.dropped = Some(u64::from(is_event));
                if is_event {
                    metrics.event_dropped();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.closed = true,
        }
    }
}

fn connection_msg(st: &ConnState, endpoint: &str) -> Message {
    Message::Connection(ConnectionState {
        state: if st.connected {
            connection_state::State::Connected
        } else {
            connection_state::State::Disconnected
        } as i32,
        reason: st.reason.clone(),
        endpoint: endpoint.to_string(),
        session: st.session,
    })
}

pub fn event_to_proto(ev: &EventMessage, sequence: u64, session: u64) -> Event {
    let (actor_id, attributes) = match &ev.actor {
        Some(a) => (
            a.id.clone().unwrap_or_default(),
            a.attributes.clone().unwrap_or_default(),
        ),
        None => (String::new(), HashMap::new()),
    };
    let time = match (ev.time_nano, ev.time) {
        (Some(n), _) if n > 0 => Some(prost_types::Timestamp {
            seconds: n.div_euclid(1_000_000_000),
            nanos: n.rem_euclid(1_000_000_000) as i32,
        }),
        (_, Some(s)) => Some(prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        }),
        _ => None,
    };
    Event {
        sequence,
        r#type: ev.typ.map(|t| t.to_string()).unwrap_or_default(),
        action: ev.action.clone().unwrap_or_default(),
        actor_id,
        attributes,
        scope: ev.scope.map(|s| s.to_string()).unwrap_or_default(),
        time,
        session,
        traceparent: String::new(),
    }
}

/// Run the hub until every sender (the engine loop and the service) is gone.
pub async fn run(mut rx: mpsc::Receiver<HubMsg>, endpoint: String, metrics: Arc<Metrics>) {
    let mut subs: Vec<Sub> = Vec::new();
    let mut state = ConnState {
        connected: false,
        reason: format!("not yet connected to {endpoint}"),
        session: 0,
    };
    let mut seq: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let any_overflowed = subs.iter().any(|s| s.dropped.is_some());
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                match msg {
                    HubMsg::Subscribe(s) => {
                        let mut sub = Sub {
                            name: s.name,
                            filter: s.filter,
                            tx: s.tx,
                            synced: false,
                            dropped: None,
                            closed: false,
                        };
                        sub.deliver(connection_msg(&state, &endpoint), &metrics);
                        if state.connected {
                            sub.synced = true;
                            sub.deliver(
                                Message::Synced(Synced { session: state.session, sequence: seq }),
                                &metrics,
                            );
                        }
                        tracing::info!(subscriber = %sub.name, "subscriber joined");
                        subs.push(sub);
                    }
                    HubMsg::State(st) => {
                        state = st;
                        for sub in subs.iter_mut() {
                            sub.deliver(connection_msg(&state, &endpoint), &metrics);
                            if state.connected {
                                let m = marker(sub, &state, seq, resync::Reason::Reconnected, &metrics);
                                sub.deliver(m, &metrics);
                            }
                        }
                    }
                    HubMsg::Event(ev, session) => {
                        seq += 1;
                        let mut ev = event_to_proto(&ev, seq, session);
                        metrics.event(&ev.r#type);
                        // The root of the trace of everything this event causes downstream.
                        let span = tracing::info_span!(
                            "docker.event",
                            otel.kind = "producer",
                            docker.event.type = %ev.r#type,
                            docker.event.action = %ev.action,
                            docker.id = %ev.actor_id,
                            docker.event.sequence = ev.sequence,
                            subscribers = tracing::field::Empty,
                        );
                        let _entered = span.enter();
                        ev.traceparent = rdd_process::telemetry::current_traceparent();
                        let mut delivered = 0u64;
                        for sub in subs.iter_mut() {
                            if sub.synced && sub.filter.matches(&ev) {
                                sub.deliver(Message::Event(ev.clone()), &metrics);
                                delivered += 1;
                            }
                        }
                        span.record("subscribers", delivered);
                    }
                }
            }
            _ = tick.tick(), if any_overflowed => {
                for sub in subs.iter_mut().filter(|s| s.dropped.is_some()) {
                    recover(sub, &state, &endpoint, seq, &metrics);
                }
            }
        }
        let before = subs.len();
        subs.retain(|s| !s.closed && !s.tx.is_closed());
        if subs.len() != before {
            tracing::info!(left = before - subs.len(), "subscriber(s) left");
        }
        metrics.set_subscribers(subs.len());
    }
}

/// `Synced` for a first-time subscriber, `Resync` for one that has been synced before.
fn marker(
    sub: &mut Sub,
    state: &ConnState,
    seq: u64,
    reason: resync::Reason,
    metrics: &Metrics,
) -> Message {
    if sub.synced {
        metrics.resync(reason.as_str_name());
        Message::Resync(Resync {
            reason: reason as i32,
            session: state.session,
            sequence: seq,
            dropped: 0,
        })
    } else {
        sub.synced = true;
        Message::Synced(Synced {
            session: state.session,
            sequence: seq,
        })
    }
}

/// An overflowed subscriber with room for the current connection state and a marker gets both;
/// while Docker is down only the state (the reconnect brings the marker).
fn recover(sub: &mut Sub, state: &ConnState, endpoint: &str, seq: u64, metrics: &Metrics) {
    if sub.tx.is_closed() {
        sub.closed = true;
        return;
    }
    if sub.tx.capacity() < 2 {
        return;
    }
    let dropped = sub.dropped.take().unwrap_or(0);
    sub.deliver(connection_msg(state, endpoint), metrics);
    if state.connected {
        let m = if sub.synced {
            metrics.resync(resync::Reason::Overflow.as_str_name());
            Message::Resync(Resync {
                reason: resync::Reason::Overflow as i32,
                session: state.session,
                sequence: seq,
                dropped,
            })
        } else {
            marker(sub, state, seq, resync::Reason::Overflow, metrics)
        };
        sub.deliver(m, metrics);
    }
    tracing::info!(subscriber = %sub.name, dropped, "overflowed subscriber resumed with a resync");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EventActor, EventMessageTypeEnum};

    fn docker_event(action: &str, id: &str) -> Box<EventMessage> {
        Box::new(EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: Some(HashMap::from([("app".to_string(), "web".to_string())])),
            }),
            scope: None,
            time: Some(1),
            time_nano: Some(1_000_000_123),
        })
    }

    fn kind(r: &Result<SubscribeResponse, Status>) -> &'static str {
        match r.as_ref().ok().and_then(|r| r.message.as_ref()) {
            Some(Message::Event(_)) => "event",
            Some(Message::Synced(_)) => "synced",
            Some(Message::Resync(_)) => "resync",
            Some(Message::Connection(_)) => "connection",
            None => "none",
        }
    }

    async fn drain(
        rx: &mut mpsc::Receiver<Result<SubscribeResponse, Status>>,
    ) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            out.push(kind(&m));
        }
        out
    }

    #[tokio::test]
    async fn overflow_drops_then_resyncs_before_new_events_and_spares_others() {
        let (tx, rx) = mpsc::channel(16);
        let metrics = Arc::new(Metrics::new());
        tokio::spawn(run(rx, "unix:///x".into(), metrics));
        let (slow_tx, mut slow_rx) = mpsc::channel(4);
        let (fast_tx, mut fast_rx) = mpsc::channel(64);
        for (name, t) in [("slow", slow_tx), ("fast", fast_tx)] {
            tx.send(HubMsg::Subscribe(Subscription {
                name: name.into(),
                filter: Filter::default(),
                tx: t,
            }))
            .await
            .unwrap();
        }
        let up = ConnState {
            connected: true,
            reason: String::new(),
            session: 1,
        };
        tx.send(HubMsg::State(up)).await.unwrap();
        for i in 0..10 {
            tx.send(HubMsg::Event(docker_event("start", &format!("c{i}")), 1))
                .await
                .unwrap();
        }
        let fast = drain(&mut fast_rx).await;
        assert_eq!(
            fast.iter().filter(|k| **k == "event").count(),
            10,
            "{fast:?}"
        );
        assert_eq!(&fast[..3], &["connection", "connection", "synced"]);
        // slow: connection, connection, synced, one event, then full; once it has read, the
        // hub resumes it with the connection state and a resync before any further event.
        let slow = drain(&mut slow_rx).await;
        assert_eq!(
            slow,
            vec![
                "connection",
                "connection",
                "synced",
                "event",
                "connection",
                "resync"
            ]
        );
        tx.send(HubMsg::Event(docker_event("die", "c1"), 1))
            .await
            .unwrap();
        assert_eq!(drain(&mut slow_rx).await, vec!["event"]);
        assert_eq!(drain(&mut fast_rx).await, vec!["event"]);
    }

    #[test]
    fn filters() {
        let ev = event_to_proto(&docker_event("exec_start: sh -c x", "c"), 7, 1);
        assert_eq!(
            ev.time.as_ref().map(|t| (t.seconds, t.nanos)),
            Some((1, 123))
        );
        let f = |t: &[&str], a: &[&str], s: &str| {
            Filter::new(
                t.iter().map(|x| x.to_string()).collect(),
                a.iter().map(|x| x.to_string()).collect(),
                s,
            )
            .unwrap()
            .matches(&ev)
        };
        assert!(f(&[], &[], ""));
        assert!(f(&["container"], &["exec_start:"], "app=web"));
        assert!(!f(&["image"], &[], ""));
        assert!(!f(&[], &["start"], ""));
        assert!(!f(&[], &[], "app!=web"));
        assert!(Filter::new(vec!["containers".into()], vec![], "").is_err());
        assert!(Filter::new(vec![], vec![" ".into()], "").is_err());
    }
}
