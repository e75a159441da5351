//! Service Bus stand-in: the REST send API (`POST /{queue}/messages` with `BrokerProperties`),
//! scheduled delivery at `ScheduledEnqueueTimeUtc`, duplicate detection by `MessageId`,
//! peek-lock delivery with complete/abandon, redelivery up to `maxDeliveryCount`, then a
//! dead-letter store. The Functions host emulator receives from it in-process, the way the
//! Service Bus extension receives over AMQP in Azure.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::time::Instant;
use warp::Filter;

use super::server::{json_response, spawn, ServerHandle};

/// Standard tier's message size limit.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct ServiceBusConfig {
    pub queues: Vec<String>,
    /// Deliveries before a message is dead-lettered (Service Bus default 10).
    pub max_delivery_count: u32,
    /// Window in which a repeated `MessageId` is dropped.
    pub duplicate_detection_window: Duration,
    /// The bearer token senders must present...
    pub token: String,
    /// ...or a SAS token signed with one of these keys (connection-string senders).
    pub sas_keys: Vec<partner_billing_export::adapters::shared_key::SharedAccessKey>,
}

/// A message handed to a receiver, locked until completed or abandoned.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub queue: String,
    pub lock_token: u64,
    pub sequence_number: u64,
    pub message_id: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    /// 1 on first delivery.
    pub delivery_count: u32,
    pub enqueued_time: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub queue: String,
    pub message_id: String,
    pub sequence_number: u64,
    pub delivery_count: u32,
    pub reason: String,
    pub body: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBusStats {
    pub sent: u64,
    pub scheduled: u64,
    pub duplicates_dropped: u64,
    pub delivered: u64,
    pub completed: u64,
    pub abandoned: u64,
    pub dead_lettered: u64,
    pub unauthorized: u64,
}

#[derive(Debug, Clone)]
struct Stored {
    seq: u64,
    message_id: String,
    body: Bytes,
    content_type: Option<String>,
    enqueued: OffsetDateTime,
    delivery_count: u32,
}

#[derive(Default)]
struct Queue {
    /// Keyed by (due instant, sequence number): the first entry is the next to deliver.
    ready: BTreeMap<(Instant, u64), Stored>,
    locked: HashMap<u64, Stored>,
    dead: Vec<DeadLetter>,
    seen: HashMap<String, Instant>,
    notify: Arc<Notify>,
}

struct State {
    queues: HashMap<String, Queue>,
    next_seq: u64,
    stats: ServiceBusStats,
}

pub struct ServiceBusEmulator {
    cfg: ServiceBusConfig,
    state: Mutex<State>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("queue {0:?} does not exist")]
    NoSuchQueue(String),
    #[error("message is larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("BrokerProperties: {0}")]
    BadBrokerProperties(String),
}

impl ServiceBusEmulator {
    pub fn new(cfg: ServiceBusConfig) -> Arc<Self> {
        let queues = cfg
            .queues
            .iter()
            .map(|q| (q.clone(), Queue::default()))
            .collect();
        Arc::new(Self {
            cfg,
            state: Mutex::new(State {
                queues,
                next_seq: 1,
                stats: ServiceBusStats::default(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("service bus state lock")
    }

    /// Accepts a message as the REST endpoint does. Returns `false` if it was a duplicate.
    pub fn enqueue(
        &self,
        queue: &str,
        body: Bytes,
        content_type: Option<String>,
        broker_properties: Option<&str>,
    ) -> Result<bool, SendError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(SendError::TooLarge);
        }
        let props = parse_broker_properties(broker_properties)?;
        let now = Instant::now();
        let due = match props.scheduled {
            Some(at) => {
                let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
                now + wait
            }
            None => now,
        };
        let mut st = self.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let window = self.cfg.duplicate_detection_window;
        let q = st
            .queues
            .get_mut(queue)
            .ok_or_else(|| SendError::NoSuchQueue(queue.into()))?;
        let message_id = props.message_id.unwrap_or_else(|| format!("sb-{seq}"));
        q.seen.retain(|_, t| now.duration_since(*t) < window);
        if q.seen.contains_key(&message_id) {
            st.stats.duplicates_dropped += 1;
            return Ok(false);
        }
        q.seen.insert(message_id.clone(), now);
        q.ready.insert(
            (due, seq),
            Stored {
                seq,
                message_id,
                body,
                content_type,
                enqueued: OffsetDateTime::now_utc(),
                delivery_count: 0,
            },
        );
        q.notify.notify_waiters();
        let notify = q.notify.clone();
        st.stats.sent += 1;
        if props.scheduled.is_some() {
            st.stats.scheduled += 1;
        }
        drop(st);
        notify.notify_one();
        Ok(true)
    }

    /// Waits for the next due message of `queue` and locks it.
    pub async fn receive(&self, queue: &str) -> Option<Delivery> {
        loop {
            let (notify, wait) = {
                let mut st = self.lock();
                let q = st.queues.get_mut(queue)?;
                let notify = q.notify.clone();
                let now = Instant::now();
                match q.ready.first_key_value().map(|(k, _)| *k) {
                    Some((due, seq)) if due <= now => {
                        let mut m = q.ready.remove(&(due, seq)).expect("entry just seen");
                        m.delivery_count += 1;
                        let d = Delivery {
                            queue: queue.to_string(),
                            lock_token: m.seq,
                            sequence_number: m.seq,
                            message_id: m.message_id.clone(),
                            body: m.body.clone(),
                            content_type: m.content_type.clone(),
                            delivery_count: m.delivery_count,
                            enqueued_time: m.enqueued,
                        };
                        q.locked.insert(m.seq, m);
                        st.stats.delivered += 1;
                        return Some(d);
                    }
                    Some((due, _)) => (notify, Some(due)),
                    None => (notify, None),
                }
            };
            let notified = notify.notified();
            match wait {
                Some(due) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The receiver processed the message: remove it.
    pub fn complete(&self, d: &Delivery) {
        let mut st = self.lock();
        if let Some(q) = st.queues.get_mut(&d.queue) {
            if q.locked.remove(&d.lock_token).is_some() {
                st.stats.completed += 1;
            }
        }
    }

    /// The receiver failed: make the message available again, or dead-letter it once it has
    /// been delivered `max_delivery_count` times.
    pub fn abandon(&self, d: &Delivery, reason: &str) {
        let max = self.cfg.max_delivery_count;
        let mut st = self.lock();
        let Some(q) = st.queues.get_mut(&d.queue) else {
            return;
        };
        let Some(m) = q.locked.remove(&d.lock_token) else {
            return;
        };
        let notify = q.notify.clone();
        if m.delivery_count >= max {
            q.dead.push(DeadLetter {
                queue: d.queue.clone(),
                message_id: m.message_id.clone(),
                sequence_number: m.seq,
                delivery_count: m.delivery_count,
                reason: format!("MaxDeliveryCountExceeded: {reason}"),
                body: String::from_utf8_lossy(&m.body)
                    .chars()
                    .take(4096)
                    .collect(),
            });
            st.stats.dead_lettered += 1;
        } else {
            q.ready.insert((Instant::now(), m.seq), m);
            st.stats.abandoned += 1;
        }
        drop(st);
        notify.notify_one();
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        let st = self.lock();
        let mut v: Vec<DeadLetter> = st
            .queues
            .values()
            .flat_map(|q| q.dead.iter().cloned())
            .collect();
        v.sort_by_key(|d| d.sequence_number);
        v
    }

    pub fn stats(&self) -> ServiceBusStats {
        self.lock().stats.clone()
    }

    /// Messages waiting, scheduled or locked, per queue.
    pub fn depth(&self) -> BTreeMap<String, usize> {
        self.lock()
            .queues
            .iter()
            .map(|(n, q)| (n.clone(), q.ready.len() + q.locked.len()))
            .collect()
    }

    /// Serves the REST send API on loopback.
    pub async fn serve(self: &Arc<Self>, port: u16) -> std::io::Result<ServerHandle> {
        let me = self.clone();
        let send = warp::post()
            .and(warp::path!(String / "messages"))
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::header::optional::<String>("host"))
            .and(warp::header::optional::<String>("brokerproperties"))
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::body::content_length_limit(
                MAX_MESSAGE_BYTES as u64 + 1,
            ))
            .and(warp::body::bytes())
            .map(
                move |queue: String,
                      auth: Option<String>,
                      host: Option<String>,
                      props: Option<String>,
                      ct: Option<String>,
                      body: Bytes| {
                    // The resource a SAS token must cover, as the sender addressed it.
                    let target = url::Url::parse(&format!(
                        "http://{}/{queue}/messages",
                        host.unwrap_or_default()
                    ))
                    .ok();
                    me.handle_send(
                        &queue,
                        auth.as_deref(),
                        target.as_ref(),
                        props.as_deref(),
                        ct,
                        body,
                    )
                },
            );
        let me = self.clone();
        let dead = warp::get()
            .and(warp::path!(String / "$deadletterqueue"))
            .map(move |queue: String| {
                let dl: Vec<_> = me
                    .dead_letters()
                    .into_iter()
                    .filter(|d| d.queue == queue)
                    .collect();
                json_response(200, &serde_json::json!({ "value": dl }))
            });
        let routes = send.or(dead).unify().recover(|r: warp::Rejection| async move {
            let status = if r.find::<warp::reject::PayloadTooLarge>().is_some() { 413 } else { 404 };
            Ok::<_, std::convert::Infallible>(json_response(status, &serde_json::json!({"Code": status, "Detail": "rejected by the Service Bus stand-in"})))
        });
        spawn(routes, port).await
    }

    fn handle_send(
        &self,
        queue: &str,
        auth: Option<&str>,
        target: Option<&url::Url>,
        props: Option<&str>,
        content_type: Option<String>,
        body: Bytes,
    ) -> warp::reply::Response {
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let authorized = match auth {
            Some(a) if a.starts_with("Bearer ") => a["Bearer ".len()..] == self.cfg.token,
            Some(a) if a.starts_with("SharedAccessSignature ") => target.is_some_and(|t| {
                partner_billing_export::adapters::shared_key::verify_service_bus_token(
                    a,
                    t,
                    &self.cfg.sas_keys,
                    now,
                )
                .is_ok()
            }),
            _ => false,
        };
        if !authorized {
            self.lock().stats.unauthorized += 1;
            return json_response(
                401,
                &serde_json::json!({"Code": 401, "Detail": "MissingToken: the request has no valid authorization"}),
            );
        }
        match self.enqueue(queue, body, content_type, props) {
            Ok(_) => json_response(201, &serde_json::json!({})),
            Err(SendError::NoSuchQueue(q)) => json_response(
                404,
                &serde_json::json!({"Code": 404, "Detail": format!("The messaging entity '{q}' could not be found")}),
            ),
            Err(SendError::TooLarge) => json_response(
                413,
                &serde_json::json!({"Code": 413, "Detail": "The message is too large"}),
            ),
            Err(e) => json_response(
                400,
                &serde_json::json!({"Code": 400, "Detail": e.to_string()}),
            ),
        }
    }
}

struct BrokerProps {
    message_id: Option<String>,
    scheduled: Option<SystemTime>,
}

fn parse_broker_properties(raw: Option<&str>) -> Result<BrokerProps, SendError> {
    let Some(raw) = raw else {
        return Ok(BrokerProps {
            message_id: None,
            scheduled: None,
        });
    };
    let v: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| SendError::BadBrokerProperties(format!("not JSON: {e}")))?;
    let message_id = match v.get("MessageId") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 128 => Some(s.clone()),
        Some(_) => {
            return Err(SendError::BadBrokerProperties(
                "MessageId must be a string of 1 to 128 characters".into(),
            ))
        }
    };
    let scheduled = match v.get("ScheduledEnqueueTimeUtc") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(httpdate::parse_http_date(s).map_err(|_| {
            SendError::BadBrokerProperties(format!(
                "ScheduledEnqueueTimeUtc {s:?} is not an RFC 1123 date"
            ))
        })?),
        Some(_) => {
            return Err(SendError::BadBrokerProperties(
                "ScheduledEnqueueTimeUtc must be a string".into(),
            ))
        }
    };
    Ok(BrokerProps {
        message_id,
        scheduled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emu(max: u32) -> Arc<ServiceBusEmulator> {
        ServiceBusEmulator::new(ServiceBusConfig {
            queues: vec!["q".into()],
            max_delivery_count: max,
            duplicate_detection_window: Duration::from_secs(600),
            token: "t".into(),
            sas_keys: Vec::new(),
        })
    }

    #[tokio::test]
    async fn delivers_in_order_and_dedupes() {
        let sb = emu(10);
        assert!(sb
            .enqueue("q", Bytes::from("a"), None, Some(r#"{"MessageId":"1"}"#))
            .unwrap());
        assert!(!sb
            .enqueue("q", Bytes::from("a"), None, Some(r#"{"MessageId":"1"}"#))
            .unwrap());
        assert!(sb.enqueue("q", Bytes::from("b"), None, None).unwrap());
        let a = sb.receive("q").await.unwrap();
        assert_eq!(a.body, "a");
        let b = sb.receive("q").await.unwrap();
        assert_eq!(b.body, "b");
        sb.complete(&a);
        sb.complete(&b);
        assert_eq!(sb.stats().duplicates_dropped, 1);
        assert_eq!(sb.depth()["q"], 0);
        assert_eq!(
            sb.enqueue("nope", Bytes::new(), None, None),
            Err(SendError::NoSuchQueue("nope".into()))
        );
        assert!(matches!(
            sb.enqueue(
                "q",
                Bytes::new(),
                None,
                Some(r#"{"ScheduledEnqueueTimeUtc":"tomorrow"}"#)
            ),
            Err(SendError::BadBrokerProperties(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_messages_wait_until_due() {
        let sb = emu(10);
        let at = OffsetDateTime::now_utc() + Duration::from_secs(30);
        let props = format!(
            r#"{{"MessageId":"s","ScheduledEnqueueTimeUtc":"{}"}}"#,
            partner_billing_export::adapters::servicebus::rfc1123(at)
        );
        sb.enqueue("q", Bytes::from("later"), None, Some(&props))
            .unwrap();
        sb.enqueue("q", Bytes::from("now"), None, None).unwrap();
        let first = sb.receive("q").await.unwrap();
        assert_eq!(first.body, "now");
        let before = Instant::now();
        let second = sb.receive("q").await.unwrap();
        assert_eq!(second.body, "later");
        // Paused clock: the receive advanced virtual time to the schedule (whole seconds in RFC 1123).
        assert!(Instant::now() - before >= Duration::from_secs(28));
    }

    #[tokio::test]
    async fn abandoned_messages_are_redelivered_then_dead_lettered() {
        let sb = emu(3);
        sb.enqueue(
            "q",
            Bytes::from("poison"),
            None,
            Some(r#"{"MessageId":"p"}"#),
        )
        .unwrap();
        for n in 1..=3 {
            let d = sb.receive("q").await.unwrap();
            assert_eq!(d.delivery_count, n);
            sb.abandon(&d, "handler failed");
        }
        let dl = sb.dead_letters();
        assert_eq!(dl.len(), 1);
        assert_eq!(dl[0].delivery_count, 3);
        assert!(dl[0].reason.contains("MaxDeliveryCountExceeded"));
        assert_eq!(sb.depth()["q"], 0);
    }
}
