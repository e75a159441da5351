//! An in-process [`MessageQueue`] for a process that owns the whole pipeline (the `export`
//! command): messages wait until their scheduled time, a resend of a `MessageId` seen within
//! the duplicate-detection window is dropped, and a delivery that failed comes back later with
//! its delivery count raised, as Service Bus does. Nothing is persisted: the run ledger is what
//! survives the process, and its owner re-enqueues outstanding work on start.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::servicebus::{MessageQueue, OutgoingMessage, QueueError};

/// Service Bus's default duplicate-detection window.
pub const DUPLICATE_DETECTION_WINDOW: Duration = Duration::from_secs(600);

/// A message handed to a receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub queue: String,
    pub message_id: String,
    pub body: Vec<u8>,
    /// 1 on the first delivery, as in Service Bus.
    pub delivery_count: u32,
}

impl Delivery {
    /// The body as JSON (what the pipeline's message types parse from).
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Per queue: (due time, arrival order) → message.
    queues: HashMap<String, BTreeMap<(OffsetDateTime, u64), Delivery>>,
    /// Message id → when it was first accepted.
    seen: HashMap<String, OffsetDateTime>,
    arrivals: u64,
    dropped_duplicates: u64,
}

#[derive(Debug)]
pub struct MemoryQueue {
    state: Mutex<State>,
    window: Duration,
    arrived: Notify,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(DUPLICATE_DETECTION_WINDOW)
    }
}

impl MemoryQueue {
    pub fn new(duplicate_detection_window: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            window: duplicate_detection_window,
            arrived: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update below is a single insert or remove: a panic cannot leave it half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, st: &mut State, at: OffsetDateTime, d: Delivery) {
        st.arrivals += 1;
        let n = st.arrivals;
        st.queues
            .entry(d.queue.clone())
            .or_default()
            .insert((at, n), d);
        self.arrived.notify_waiters();
    }

    /// Takes the earliest message of `queue` that is due at `now`.
    pub fn receive_due(&self, queue: &str, now: OffsetDateTime) -> Option<Delivery> {
        let mut st = self.state();
        let q = st.queues.get_mut(queue)?;
        let key = *q.keys().next().filter(|(at, _)| *at <= now)?;
        q.remove(&key)
    }

    /// Puts a delivery that failed back, due at `at`, with its delivery count raised.
    pub fn abandon(&self, mut d: Delivery, at: OffsetDateTime) {
        d.delivery_count += 1;
        let mut st = self.state();
        self.enqueue(&mut st, at, d);
    }

    /// When the next message of any queue is due, if any is waiting.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        self.state()
            .queues
            .values()
            .filter_map(|q| q.keys().next().map(|(at, _)| *at))
            .min()
    }

    /// Messages waiting (due or not) in `queue`.
    pub fn depth(&self, queue: &str) -> usize {
        self.state().queues.get(queue).map_or(0, BTreeMap::len)
    }

    /// Sends dropped because their `MessageId` was seen within the window.
    pub fn dropped_duplicates(&self) -> u64 {
        self.state().dropped_duplicates
    }

    /// Resolves when a message arrives after this call (or is put back).
    pub async fn arrival(&self) {
        self.arrived.notified().await
    }
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn send(&self, queue: &str, msg: &OutgoingMessage) -> Result<(), QueueError> {
        let now = OffsetDateTime::now_utc();
        let mut st = self.state();
        let window = self.window;
        st.seen.retain(|_, first| now - *first < window);
        if st.seen.contains_key(&msg.message_id) {
            st.dropped_duplicates += 1;
            tracing::debug!(queue, message_id = %msg.message_id, "duplicate message dropped");
            return Ok(());
        }
        st.seen.insert(msg.message_id.clone(), now);
        let at = msg.scheduled_enqueue_time.unwrap_or(now);
        let d = Delivery {
            queue: queue.to_string(),
            message_id: msg.message_id.clone(),
            body: msg.body.clone(),
            delivery_count: 1,
        };
        self.enqueue(&mut st, at, d);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, at: Option<OffsetDateTime>) -> OutgoingMessage {
        OutgoingMessage::json(&serde_json::json!({"id": id}), id, at).unwrap()
    }

    #[tokio::test]
    async fn holds_messages_until_due_in_time_order() {
        let q = MemoryQueue::default();
        let now = OffsetDateTime::now_utc();
        let later = now + Duration::from_secs(30);
        q.send("a", &msg("late", Some(later))).await.unwrap();
        q.send("a", &msg("now", None)).await.unwrap();
        assert_eq!(q.depth("a"), 2);
        let first = q.receive_due("a", now + Duration::from_secs(1)).unwrap();
        assert_eq!(first.message_id, "now");
        assert_eq!(first.delivery_count, 1);
        assert!(q.receive_due("a", now + Duration::from_secs(1)).is_none());
        assert_eq!(q.next_due(), Some(later));
        assert!(q.receive_due("b", later).is_none());
        assert_eq!(q.receive_due("a", later).unwrap().message_id, "late");
        assert_eq!(q.next_due(), None);
    }

    #[tokio::test]
    async fn drops_resends_within_the_window_and_redelivers_abandoned() {
        let q = MemoryQueue::new(Duration::from_secs(60));
        q.send("a", &msg("m1", None)).await.unwrap();
        q.send("a", &msg("m1", None)).await.unwrap();
        assert_eq!(q.depth("a"), 1);
        assert_eq!(q.dropped_duplicates(), 1);
        let now = OffsetDateTime::now_utc() + Duration::from_secs(1);
        let d = q.receive_due("a", now).unwrap();
        assert_eq!(d.json().unwrap()["id"], "m1");
        q.abandon(d, now);
        let again = q.receive_due("a", now).unwrap();
        assert_eq!(again.delivery_count, 2);
        // Past the window the same id is a new message.
        let q = MemoryQueue::new(Duration::ZERO);
        q.send("a", &msg("m1", None)).await.unwrap();
        q.send("a", &msg("m1", None)).await.unwrap();
        assert_eq!(q.depth("a"), 2);
    }
}
