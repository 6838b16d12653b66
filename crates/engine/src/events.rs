//! The event bus behind `GET /events`: every state change is published once; subscribers get
//! what happens after they subscribe (plus a short history for `since`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for `since`/`until` queries of the past.
const HISTORY: usize = 1024;

/// One event in the shape of the API's `EventMessage`, plus the legacy top-level fields
/// (`status`, `id`, `from`) older clients read.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: &'static str,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: HashMap<String, String>,
}

pub struct Events {
    sender: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    pub fn new() -> Events {
        Events {
            sender: broadcast::channel(HISTORY).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Publish `kind` (container, image, volume, network) `action` (create, start, die, ...)
    /// about `id`; `attributes` as the API shows them (name, image, exitCode, ...).
    pub fn emit(&self, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
        let nanos = crate::time::now_nanos();
        let attributes: HashMap<String, String> = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Legacy fields exist for containers and images only, as in Docker.
        let legacy = matches!(kind, "container" | "image");
        let event = Event {
            kind: kind.to_string(),
            action: action.to_string(),
            scope: "local",
            time: nanos / 1_000_000_000,
            time_nano: nanos,
            status: legacy.then(|| action.to_string()),
            id: legacy.then(|| id.to_string()),
            from: legacy.then(|| attributes.get("image").cloned()).flatten(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
        };
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(event.clone());
        }
        // No subscriber is fine.
        let _ = self.sender.send(event);
    }

    /// The events kept so far and a receiver of every later one.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        // Subscribed under the lock: no event falls between the copy and the receiver.
        (history.iter().cloned().collect(), self.sender.subscribe())
    }
}
