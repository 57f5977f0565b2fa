//! Several replicas, one key pool: the pool's decisions ([`Fact`]s) shared through Redis
//! (`REDIS_URL`). Optional; without it nothing here runs.
//!
//! The hot path never waits on Redis: the pool hands each decision to a bounded channel, and a
//! background task writes it to Redis (the durable copy, with TTLs equal to the deadlines) and
//! publishes it; every other replica applies it to its local pool as it arrives. A replica
//! pushes its own state and pulls the shared one when it starts and whenever it (re)connects,
//! so an outage loses nothing: every replica keeps serving from its local view meanwhile.
//!
//! Layout under `REDIS_PREFIX` (default `gb:`): `keys` (hash fingerprint → key), `manual`
//! (set), `invalid` (hash fingerprint → message), `na:{fp}` (set of zero-quota models),
//! `dl:{fp}` (hash of deadlines in epoch ms: `key`, `m:{model}`, `cooldown`, plus `strikes`),
//! and the channel `events`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::pool::{Fact, KeyFacts, KeyPool};
use super::secret::Secret;

/// `REDIS_URL` and friends.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// May hold credentials: a [`Secret`], never printed.
    pub url: Secret,
    pub prefix: String,
    /// This replica's name, shown on the admin page and used to skip its own events.
    pub replica: String,
}

/// Later deadline wins, atomically: sets field ARGV[1] of hash KEYS[1] to ARGV[2] (epoch ms)
/// unless it holds a later one, raises `strikes` to ARGV[3] when given, and keeps the hash until
/// its latest deadline (then Redis forgets it: the TTL is the cooldown).
const LATER_WINS: &str = r"
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local wanted = tonumber(ARGV[2])
if wanted > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
if ARGV[3] then
  local strikes = tonumber(redis.call('HGET', KEYS[1], 'strikes') or '0')
  if tonumber(ARGV[3]) > strikes then redis.call('HSET', KEYS[1], 'strikes', ARGV[3]) end
end
local expires = redis.call('PEXPIRETIME', KEYS[1])
if expires < wanted then redis.call('PEXPIREAT', KEYS[1], wanted) end
return math.max(current, wanted)
";

/// A handle on the sharing: whether Redis is reachable, and this replica's name.
#[derive(Debug)]
pub struct SharedPool {
    up: Arc<AtomicBool>,
    replica: String,
}

impl SharedPool {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }
}

struct Syncer {
    client: redis::Client,
    pool: Arc<KeyPool>,
    prefix: String,
    replica: String,
    up: Arc<AtomicBool>,
    /// Set when a decision could not be written (queue full, Redis down): the next session
    /// pushes the whole local state.
    dirty: Arc<AtomicBool>,
    script: redis::Script,
}

/// How long one Redis command may take before the session counts Redis as down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects the pool to Redis: local decisions are shared from now on, and the shared state is
/// pulled before this returns (within a few seconds; if Redis is not there, the replica starts
/// from its local state, warns, and joins when Redis appears).
pub async fn start(settings: RedisSettings, pool: Arc<KeyPool>) -> Result<Arc<SharedPool>, String> {
    let client = redis::Client::open(settings.url.expose())
        .map_err(|e| format!("REDIS_URL is not a valid Redis URL ({:?})", e.kind()))?;
    let (tx, rx) = mpsc::channel::<Fact>(8192);
    let dirty = Arc::new(AtomicBool::new(false));
    let full = dirty.clone();
    pool.share_with(Arc::new(move |fact| {
        if tx.try_send(fact).is_err() {
            full.store(true, Ordering::Relaxed);
        }
    }));
    let sync = Syncer {
        client,
        pool,
        prefix: settings.prefix,
        replica: settings.replica.clone(),
        up: Arc::new(AtomicBool::new(false)),
        dirty,
        script: redis::Script::new(LATER_WINS),
    };
    let handle = Arc::new(SharedPool {
        up: sync.up.clone(),
        replica: settings.replica,
    });
    // Pick the shared state up before serving (subscribed first, so nothing published meanwhile
    // is missed).
    let first = match tokio::time::timeout(Duration::from_secs(5), sync.establish()).await {
        Ok(Ok(session)) => {
            tracing::info!(replica = %sync.replica, "shared pool state loaded from Redis");
            Some(session)
        }
        Ok(Err(e)) => {
            warn_down(&e);
            None
        }
        Err(_) => {
            warn_down("no answer within 5 s");
            None
        }
    };
    if first.is_none() {
        sync.dirty.store(true, Ordering::Relaxed);
    }
    tokio::spawn(sync.run(rx, first));
    Ok(handle)
}

/// A connection for commands and the subscription to other replicas' events.
type Session = (MultiplexedConnection, redis::aio::PubSubStream);

fn warn_down(reason: &str) {
    tracing::warn!(
        reason,
        "Redis is unreachable: serving from this replica's own pool state until it is back"
    );
}

impl Syncer {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        self.client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// Runs sessions until the pool is gone, reconnecting after each failure.
    async fn run(self, mut rx: mpsc::Receiver<Fact>, mut first: Option<Session>) {
        loop {
            let session = match first.take() {
                Some(s) => Ok(s),
                None => self.establish().await,
            };
            let result = match session {
                Ok((conn, messages)) => {
                    if !self.up.swap(true, Ordering::Relaxed) {
                        tracing::info!(replica = %self.replica, "Redis is reachable; pool state reconciled");
                    }
                    self.serve(conn, messages, &mut rx).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return,
                Err(e) => {
                    self.dirty.store(true, Ordering::Relaxed);
                    if self.up.swap(false, Ordering::Relaxed) {
                        warn_down(&e);
                    }
                    // Decisions made meanwhile stay local; the next session pushes them all.
                    while rx.try_recv().is_ok() {}
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Connects, subscribes, then reconciles: pushes this replica's state, pulls the shared
    /// one, and asks the others to pull what it pushed.
    async fn establish(&self) -> Result<Session, String> {
        let mut conn = self.connect().await.map_err(|e| e.to_string())?;
        let mut pubsub = tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| "no answer".to_string())?
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(COMMAND_TIMEOUT, pubsub.subscribe(self.key("events")))
            .await
            .map_err(|_| "no answer".to_string())?
            .map_err(|e| e.to_string())?;
        self.dirty.store(false, Ordering::Relaxed);
        self.reconcile(&mut conn).await.map_err(|e| e.to_string())?;
        Ok((conn, pubsub.into_on_message()))
    }

    /// One connected stretch: writes local decisions, applies the others'. `Ok` when the pool's
    /// side of the channel is gone (shutdown).
    async fn serve(
        &self,
        mut conn: MultiplexedConnection,
        mut messages: redis::aio::PubSubStream,
        rx: &mut mpsc::Receiver<Fact>,
    ) -> Result<(), String> {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                fact = rx.recv() => {
                    let Some(fact) = fact else { return Ok(()) };
                    self.write(&mut conn, &fact).await.map_err(|e| e.to_string())?;
                }
                msg = messages.next() => {
                    let Some(msg) = msg else { return Err("the event subscription closed".into()) };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    match decode(&payload, &self.replica) {
                        Some(Event::Fact(fact)) => self.pool.apply_fact(&fact),
                        Some(Event::Sync) => self.pull(&mut conn).await.map_err(|e| e.to_string())?,
                        None => {}
                    }
                }
                _ = tick.tick() => {
                    let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| e.to_string())?;
                    if self.dirty.swap(false, Ordering::Relaxed) {
                        self.reconcile(&mut conn).await.map_err(|e| e.to_string())?;
                    }
                }
            }
        }
    }

    /// Pushes this replica's whole state (later deadlines win), then pulls the shared one.
    async fn reconcile(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        for facts in self.pool.facts() {
            self.push(conn, &facts).await?;
        }
        self.pull(conn).await?;
        let sync = json!({"origin": self.replica, "sync": true}).to_string();
        conn.publish(self.key("events"), sync).await
    }

    async fn push(&self, conn: &mut MultiplexedConnection, f: &KeyFacts) -> redis::RedisResult<()> {
        let fp = &f.fingerprint;
        let mut pipe = redis::pipe();
        pipe.hset_nx(self.key("keys"), fp, f.secret.expose()).ignore();
        if f.manual {
            pipe.sadd(self.key("manual"), fp).ignore();
        }
        if let Some(message) = &f.invalid {
            pipe.hset(self.key("invalid"), fp, message).ignore();
        }
        if !f.unavailable_models.is_empty() {
            pipe.sadd(self.key(&format!("na:{fp}")), &f.unavailable_models).ignore();
        }
        let _: () = pipe.query_async(conn).await?;
        let deadlines = self.key(&format!("dl:{fp}"));
        if let Some(until) = f.key_rate_limit_ms {
            self.later_wins(conn, &deadlines, "key", until, None).await?;
        }
        for (model, until) in &f.model_rate_limits_ms {
            self.later_wins(conn, &deadlines, &format!("m:{model}"), *until, None)
                .await?;
        }
        if let Some((until, strikes)) = f.cooldown_ms {
            self.later_wins(conn, &deadlines, "cooldown", until, Some(strikes))
                .await?;
        }
        Ok(())
    }

    async fn later_wins(
        &self,
        conn: &mut MultiplexedConnection,
        hash: &str,
        field: &str,
        until_ms: u64,
        strikes: Option<u32>,
    ) -> redis::RedisResult<()> {
        let mut call = self.script.key(hash);
        call.arg(field).arg(until_ms);
        if let Some(s) = strikes {
            call.arg(s);
        }
        let _: u64 = call.invoke_async(conn).await?;
        Ok(())
    }

    /// Applies everything Redis holds to the local pool.
    async fn pull(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let keys: HashMap<String, String> = conn.hgetall(self.key("keys")).await?;
        let manual: HashSet<String> = conn.smembers(self.key("manual")).await?;
        let invalid: HashMap<String, String> = conn.hgetall(self.key("invalid")).await?;
        for (fp, secret) in &keys {
            self.pool.apply_fact(&Fact::Added {
                secret: Secret::new(secret.clone()),
            });
            if manual.contains(fp) {
                self.pool.apply_fact(&Fact::Manual {
                    fingerprint: fp.clone(),
                    on: true,
                });
            }
            if let Some(message) = invalid.get(fp) {
                self.pool.apply_fact(&Fact::Invalid {
                    fingerprint: fp.clone(),
                    message: message.clone(),
                });
            }
            let models: Vec<String> = conn.smembers(self.key(&format!("na:{fp}"))).await?;
            for model in models {
                self.pool.apply_fact(&Fact::ModelUnavailable {
                    fingerprint: fp.clone(),
                    model,
                });
            }
            let deadlines: HashMap<String, u64> = conn.hgetall(self.key(&format!("dl:{fp}"))).await?;
            let strikes = deadlines.get("strikes").copied().unwrap_or(0) as u32;
            for (field, until_ms) in &deadlines {
                let fact = match field.as_str() {
                    "key" => Fact::RateLimited {
                        fingerprint: fp.clone(),
                        model: None,
                        until_ms: *until_ms,
                    },
                    "cooldown" => Fact::Cooldown {
                        fingerprint: fp.clone(),
                        until_ms: *until_ms,
                        strikes,
                    },
                    other => match other.strip_prefix("m:") {
                        Some(model) => Fact::RateLimited {
                            fingerprint: fp.clone(),
                            model: Some(model.to_string()),
                            until_ms: *until_ms,
                        },
                        None => continue,
                    },
                };
                self.pool.apply_fact(&fact);
            }
        }
        Ok(())
    }

    /// Stores one decision and tells the other replicas.
    async fn write(&self, conn: &mut MultiplexedConnection, fact: &Fact) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        match fact {
            Fact::Added { secret } => {
                pipe.hset(self.key("keys"), super::pool::fingerprint(secret), secret.expose())
                    .ignore();
            }
            Fact::Removed { fingerprint: fp } => {
                pipe.hdel(self.key("keys"), fp)
                    .ignore()
                    .srem(self.key("manual"), fp)
                    .ignore()
                    .hdel(self.key("invalid"), fp)
                    .ignore()
                    .del(self.key(&format!("na:{fp}")))
                    .ignore()
                    .del(self.key(&format!("dl:{fp}")))
                    .ignore();
            }
            Fact::Manual {
                fingerprint: fp,
                on: true,
            } => {
                pipe.sadd(self.key("manual"), fp).ignore();
            }
            Fact::Manual {
                fingerprint: fp,
                on: false,
            } => {
                pipe.srem(self.key("manual"), fp)
                    .ignore()
                    .hdel(self.key("invalid"), fp)
                    .ignore();
            }
            Fact::Reset { fingerprint: fp } => {
                pipe.hdel(self.key("invalid"), fp)
                    .ignore()
                    .del(self.key(&format!("na:{fp}")))
                    .ignore()
                    .del(self.key(&format!("dl:{fp}")))
                    .ignore();
            }
            Fact::Invalid {
                fingerprint: fp,
                message,
            } => {
                pipe.hset(self.key("invalid"), fp, message).ignore();
            }
            Fact::Works { fingerprint: fp } => {
                pipe.hdel(self.key("invalid"), fp)
                    .ignore()
                    .del(self.key(&format!("na:{fp}")))
                    .ignore();
            }
            Fact::ModelUnavailable { fingerprint: fp, model } => {
                pipe.sadd(self.key(&format!("na:{fp}")), model).ignore();
            }
            Fact::RateLimited {
                fingerprint: fp,
                model,
                until_ms,
            } => {
                let field = model.as_ref().map_or_else(|| "key".to_string(), |m| format!("m:{m}"));
                self.later_wins(conn, &self.key(&format!("dl:{fp}")), &field, *until_ms, None)
                    .await?;
            }
            Fact::Cooldown {
                fingerprint: fp,
                until_ms,
                strikes,
            } => {
                self.later_wins(
                    conn,
                    &self.key(&format!("dl:{fp}")),
                    "cooldown",
                    *until_ms,
                    Some(*strikes),
                )
                .await?;
            }
        }
        pipe.publish(self.key("events"), encode(fact, &self.replica)).ignore();
        pipe.query_async(conn).await
    }
}

/// A fact as an event message, with its origin.
pub fn encode(fact: &Fact, origin: &str) -> String {
    let body = match fact {
        Fact::Added { secret } => json!({"kind": "added", "key": secret.expose()}),
        Fact::Removed { fingerprint } => json!({"kind": "removed", "fp": fingerprint}),
        Fact::Manual { fingerprint, on } => json!({"kind": "manual", "fp": fingerprint, "on": on}),
        Fact::Reset { fingerprint } => json!({"kind": "reset", "fp": fingerprint}),
        Fact::Invalid { fingerprint, message } => json!({"kind": "invalid", "fp": fingerprint, "message": message}),
        Fact::Works { fingerprint } => json!({"kind": "works", "fp": fingerprint}),
        Fact::ModelUnavailable { fingerprint, model } => {
            json!({"kind": "model_unavailable", "fp": fingerprint, "model": model})
        }
        Fact::RateLimited {
            fingerprint,
            model,
            until_ms,
        } => json!({"kind": "rate_limited", "fp": fingerprint, "model": model, "until": until_ms}),
        Fact::Cooldown {
            fingerprint,
            until_ms,
            strikes,
        } => json!({"kind": "cooldown", "fp": fingerprint, "until": until_ms, "strikes": strikes}),
    };
    json!({"origin": origin, "fact": body}).to_string()
}

/// What another replica said.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Fact(Fact),
    /// It pushed its whole state (back after an outage): pull.
    Sync,
}

/// An event message from another replica (`None` for this replica's own, or junk).
pub fn decode(payload: &str, me: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(payload).ok()?;
    if v.get("origin").and_then(Value::as_str) == Some(me) {
        return None;
    }
    if v.get("sync").and_then(Value::as_bool) == Some(true) {
        return Some(Event::Sync);
    }
    decode_fact(v.get("fact")?).map(Event::Fact)
}

fn decode_fact(f: &Value) -> Option<Fact> {
    let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
    let fp = || s("fp");
    Some(match f.get("kind")?.as_str()? {
        "added" => Fact::Added {
            secret: Secret::new(s("key")?),
        },
        "removed" => Fact::Removed { fingerprint: fp()? },
        "manual" => Fact::Manual {
            fingerprint: fp()?,
            on: f.get("on")?.as_bool()?,
        },
        "reset" => Fact::Reset { fingerprint: fp()? },
        "invalid" => Fact::Invalid {
            fingerprint: fp()?,
            message: s("message").unwrap_or_default(),
        },
        "works" => Fact::Works { fingerprint: fp()? },
        "model_unavailable" => Fact::ModelUnavailable {
            fingerprint: fp()?,
            model: s("model")?,
        },
        "rate_limited" => Fact::RateLimited {
            fingerprint: fp()?,
            model: s("model"),
            until_ms: f.get("until")?.as_u64()?,
        },
        "cooldown" => Fact::Cooldown {
            fingerprint: fp()?,
            until_ms: f.get("until")?.as_u64()?,
            strikes: f.get("strikes").and_then(Value::as_u64).unwrap_or(0) as u32,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_skip_their_own_origin() {
        let facts = [
            Fact::Added {
                secret: Secret::new("AIzaRoundTrip0000000001"),
            },
            Fact::Removed {
                fingerprint: "ab".into(),
            },
            Fact::Manual {
                fingerprint: "ab".into(),
                on: true,
            },
            Fact::Reset {
                fingerprint: "ab".into(),
            },
            Fact::Invalid {
                fingerprint: "ab".into(),
                message: "bad".into(),
            },
            Fact::Works {
                fingerprint: "ab".into(),
            },
            Fact::ModelUnavailable {
                fingerprint: "ab".into(),
                model: "m".into(),
            },
            Fact::RateLimited {
                fingerprint: "ab".into(),
                model: None,
                until_ms: 5,
            },
            Fact::RateLimited {
                fingerprint: "ab".into(),
                model: Some("m".into()),
                until_ms: 6,
            },
            Fact::Cooldown {
                fingerprint: "ab".into(),
                until_ms: 7,
                strikes: 3,
            },
        ];
        for fact in facts {
            let wire = encode(&fact, "a");
            assert_eq!(decode(&wire, "b"), Some(Event::Fact(fact.clone())), "{wire}");
            assert_eq!(decode(&wire, "a"), None);
        }
        assert_eq!(decode("not json", "b"), None);
        assert_eq!(decode(r#"{"origin":"x","sync":true}"#, "b"), Some(Event::Sync));
        assert_eq!(decode(r#"{"origin":"x","fact":{"kind":"cooldown"}}"#, "b"), None);
    }
}
