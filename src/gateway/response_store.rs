//! Stored Responses API conversations for `previous_response_id`: each response keeps its own
//! turn (input and output items) and a link to the one before, per token. Bounded by count per
//! token and by total bytes; the oldest go first. In memory: a restart forgets them, as a
//! client that must not lose a conversation sends it whole.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::GatewayError;

/// Who a stored response belongs to: a digest of the client's token (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    pub fn of_token(token: Option<&str>) -> Self {
        let digest = Sha256::digest(token.unwrap_or("").as_bytes());
        Owner(digest.iter().take(16).map(|b| format!("{b:02x}")).collect())
    }

    /// The digest as text (what is stored; never the token).
    pub fn digest(&self) -> &str {
        &self.0
    }
}

#[derive(Debug)]
struct Stored {
    owner: Owner,
    previous: Option<String>,
    items: Vec<Value>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Stored>,
    /// Every id, oldest first (for the byte limit).
    order: VecDeque<String>,
    /// Each owner's ids, oldest first (for the count limit).
    by_owner: HashMap<Owner, VecDeque<String>>,
    bytes: usize,
}

#[derive(Debug)]
pub struct ResponseStore {
    per_owner: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

impl Default for ResponseStore {
    fn default() -> Self {
        Self::new(200, 256 << 20)
    }
}

impl ResponseStore {
    /// At most `per_owner` responses per token (0: none kept) and `max_bytes` of items in all.
    pub fn new(per_owner: usize, max_bytes: usize) -> Self {
        ResponseStore {
            per_owner,
            max_bytes,
            inner: Mutex::default(),
        }
    }

    /// Keeps a response's turn: this request's input items and the response's output items.
    pub fn put(&self, owner: &Owner, id: &str, previous: Option<&str>, items: Vec<Value>) {
        let bytes: usize = items.iter().map(|v| v.to_string().len()).sum();
        if self.per_owner == 0 || bytes > self.max_bytes {
            tracing::debug!(
                bytes,
                "a response too large for RESPONSES_STORE_MAX_BYTES is not stored"
            );
            return;
        }
        let Ok(mut inner) = self.inner.lock() else { return };
        inner.bytes += bytes;
        inner.entries.insert(
            id.to_string(),
            Stored {
                owner: owner.clone(),
                previous: previous.map(str::to_string),
                items,
                bytes,
            },
        );
        inner.order.push_back(id.to_string());
        let ids = inner.by_owner.entry(owner.clone()).or_default();
        ids.push_back(id.to_string());
        let mut evict: Vec<String> = Vec::new();
        while ids.len() > self.per_owner {
            evict.extend(ids.pop_front());
        }
        for id in evict {
            inner.remove(&id);
        }
        while inner.bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            inner.remove(&oldest);
        }
    }

    /// The whole conversation up to and including response `id`, oldest items first. An id that
    /// is unknown, expired or another token's is a 400 naming `previous_response_id`.
    pub fn history(&self, owner: &Owner, id: &str) -> Result<Vec<Value>, GatewayError> {
        let missing = |which: &str| {
            GatewayError::invalid(
                format!("Previous response with id '{which}' not found. It may have expired, been stored with store: false, or belong to another token; send the whole conversation instead."),
                Some("previous_response_id"),
            )
        };
        let inner = self.inner.lock().map_err(|_| missing(id))?;
        let mut chain: Vec<&Stored> = Vec::new();
        let mut next = Some(id.to_string());
        while let Some(current) = next {
            let stored = inner
                .entries
                .get(&current)
                .filter(|s| s.owner == *owner)
                .ok_or_else(|| missing(&current))?;
            chain.push(stored);
            if chain.len() > inner.entries.len() {
                break;
            }
            next = stored.previous.clone();
        }
        Ok(chain.iter().rev().flat_map(|s| s.items.iter().cloned()).collect())
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn remove(&mut self, id: &str) {
        if let Some(s) = self.entries.remove(id) {
            self.bytes -= s.bytes;
            if let Some(ids) = self.by_owner.get_mut(&s.owner) {
                ids.retain(|i| i != id);
                if ids.is_empty() {
                    self.by_owner.remove(&s.owner);
                }
            }
        }
        // `order` keeps stale ids until they reach the front; removing them there is a no-op.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|i| entries.contains_key(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chains_are_followed_and_scoped_to_their_token() {
        let store = ResponseStore::new(10, 1 << 20);
        let alice = Owner::of_token(Some("alice"));
        let bob = Owner::of_token(Some("bob"));
        store.put(&alice, "r1", None, vec![json!(1), json!(2)]);
        store.put(&alice, "r2", Some("r1"), vec![json!(3)]);
        assert_eq!(
            store.history(&alice, "r2").expect("found"),
            vec![json!(1), json!(2), json!(3)]
        );
        let err = store.history(&bob, "r2").expect_err("another token's");
        assert_eq!(err.to_openai().error.param.as_deref(), Some("previous_response_id"));
        assert!(store.history(&alice, "nope").is_err());
    }

    #[test]
    fn limits_evict_the_oldest() {
        let store = ResponseStore::new(2, 1 << 20);
        let a = Owner::of_token(Some("a"));
        for i in 0..5 {
            store.put(&a, &format!("r{i}"), None, vec![json!(i)]);
        }
        assert_eq!(store.len(), 2);
        assert!(store.history(&a, "r2").is_err());
        assert!(store.history(&a, "r4").is_ok());
        // A broken chain (its start evicted) is an error, not a partial conversation.
        store.put(&a, "r5", Some("r0"), vec![json!(5)]);
        assert!(store.history(&a, "r5").is_err());

        let small = ResponseStore::new(100, 10);
        let b = Owner::of_token(None);
        small.put(&b, "x", None, vec![json!("0123")]);
        small.put(&b, "y", None, vec![json!("4567")]);
        assert!(small.history(&b, "x").is_err(), "bytes limit evicts the oldest");
        assert!(small.history(&b, "y").is_ok());
        small.put(&b, "z", None, vec![json!("far too large for the store")]);
        assert!(small.history(&b, "z").is_err());
    }
}
