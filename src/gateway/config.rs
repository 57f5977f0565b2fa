//! Settings: read once at start-up from the process environment over `.env.local` over `.env`,
//! parsed and validated into [`Settings`]. A bad value is an error naming the setting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::secret::Secret;

pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The longest duration any setting may have (a year): keeps time arithmetic from overflowing.
const MAX_SECS: f64 = 365.0 * 86_400.0;

#[derive(Debug, Clone)]
pub struct Settings {
    pub api_keys: Vec<Secret>,
    pub base_url: String,
    pub allowed_tokens: Vec<Secret>,
    pub admin_token: Option<Secret>,
    pub max_retries: u32,
    pub pool: PoolSettings,
    pub upstream: UpstreamSettings,
    pub max_body_bytes: usize,
    pub media: super::media::MediaSettings,
    pub site_addr: SocketAddr,
    pub site_root: PathBuf,
    pub data_dir: PathBuf,
    pub log_retention: Duration,
    /// Upper bound on request-log rows kept (oldest pruned first, in batches).
    pub log_max_rows: u64,
    pub log_json: bool,
    /// How long in-flight requests and streams may run on after SIGTERM.
    pub shutdown_grace: Duration,
    /// Connections held at once (each open stream holds one, plus one upstream).
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Serving threads (`SERVER_THREADS`, default: one per CPU).
    pub server_threads: usize,
    /// The model key validation and probes ask `countTokens` of.
    pub probe_model: String,
    /// Client model names mapped to Gemini models (`MODEL_ALIASES`).
    pub model_aliases: super::aliases::ModelAliases,
    /// Whether `-search`, `-thinking`, `-nothinking` and `-image` model suffixes are read.
    pub model_suffixes: bool,
    /// Responses kept for `previous_response_id`: per token, and bytes in all.
    pub responses_per_token: usize,
    pub responses_max_bytes: usize,
    /// Shared pool state for several replicas (`REDIS_URL`); `None`: this replica alone.
    pub redis: Option<super::redis_sync::RedisSettings>,
    /// Egress proxies keys are spread over (`GEMINI_PROXIES`); empty: straight to Google.
    pub proxies: Vec<super::proxy::ProxySpec>,
}

/// Health-tracking knobs of the key pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Consecutive key/server failures that take a key out of rotation.
    pub max_failures: u32,
    /// First cooldown after `max_failures`; doubles on each repeat up to `cooldown_max`.
    pub cooldown: Duration,
    pub cooldown_max: Duration,
    /// First delay before an invalid key is probed again; doubles up to `revalidate_max`.
    pub revalidate: Duration,
    pub revalidate_max: Duration,
    /// Cooldown for a 429 whose body carries no `RetryInfo`.
    pub default_rate_limit: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    /// Nothing at all from Google (no response headers) for this long: the key is abandoned and
    /// the request moves on to the next one.
    pub first_byte_timeout: Duration,
    /// After Google accepted a stream, the longest wait for its next event (also for the first:
    /// a thinking model may be silent for minutes). Whole answers are bounded by
    /// `total_timeout` alone.
    pub idle_timeout: Duration,
    /// Deadline of a whole non-streaming answer. Streams that keep sending are not bound by it.
    pub total_timeout: Duration,
    /// Deadline of one key probe (validation, re-validation).
    pub probe_timeout: Duration,
    pub http2: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

fn err(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

impl Settings {
    /// Reads `.env` and `.env.local` from `dir` (when present) and the process environment over them.
    pub fn load_from(dir: &Path) -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        for file in [".env", ".env.local"] {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            let iter =
                dotenvy::from_path_iter(&path).map_err(|e| err("(.env file)", format!("{}: {e}", path.display())))?;
            for item in iter {
                let (k, v) = item.map_err(|e| err("(.env file)", format!("{}: {e}", path.display())))?;
                vars.insert(k, v);
            }
        }
        vars.extend(std::env::vars());
        Self::from_map(&vars)
    }

    /// Parses settings from a map of variables (tests use this directly).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        let api_keys = secret_list(get("GEMINI_API_KEYS"));
        let base_url = match get("GEMINI_BASE_URL") {
            None => DEFAULT_BASE_URL.to_string(),
            Some(url) => {
                let url = url.trim_end_matches('/');
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(err(
                        "GEMINI_BASE_URL",
                        format!("must start with http:// or https://, got {url:?}"),
                    ));
                }
                url.to_string()
            }
        };
        let allowed_tokens = secret_list(get("ALLOWED_TOKENS"));
        let proxies = super::proxy::parse_list(get("GEMINI_PROXIES")).map_err(|m| err("GEMINI_PROXIES", m))?;
        let admin_token = get("ADMIN_TOKEN").map(Secret::new);

        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => {
                    let n: f64 = v
                        .parse()
                        .map_err(|_| err(name, format!("expected a number of seconds, got {v:?}")))?;
                    if !(n.is_finite() && n > 0.0) {
                        return Err(err(name, format!("must be a positive number of seconds, got {v:?}")));
                    }
                    if n > MAX_SECS {
                        return Err(err(
                            name,
                            format!("must be at most {MAX_SECS} seconds (a year), got {v:?}"),
                        ));
                    }
                    Ok(Duration::from_secs_f64(n))
                }
            }
        };
        let count = |name: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => {
                    let n: u64 = v
                        .parse()
                        .map_err(|_| err(name, format!("expected a whole number, got {v:?}")))?;
                    if n < min {
                        return Err(err(name, format!("must be at least {min}, got {n}")));
                    }
                    if n > max {
                        return Err(err(name, format!("must be at most {max}, got {n}")));
                    }
                    Ok(n)
                }
            }
        };
        let flag = |name: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(name).map(str::to_ascii_lowercase).as_deref() {
                None => Ok(default),
                Some("1" | "true" | "yes" | "on") => Ok(true),
                Some("0" | "false" | "no" | "off") => Ok(false),
                Some(v) => Err(err(name, format!("expected true or false, got {v:?}"))),
            }
        };

        let pool = PoolSettings {
            max_failures: count("MAX_FAILURES", 3, 1, 1000)? as u32,
            cooldown: secs("KEY_COOLDOWN_SECS", 60)?,
            cooldown_max: secs("KEY_COOLDOWN_MAX_SECS", 1800)?,
            revalidate: secs("KEY_REVALIDATE_SECS", 300)?,
            revalidate_max: secs("KEY_REVALIDATE_MAX_SECS", 6 * 3600)?,
            default_rate_limit: secs("KEY_RATE_LIMIT_DEFAULT_SECS", 60)?,
        };
        if pool.cooldown_max < pool.cooldown {
            return Err(err(
                "KEY_COOLDOWN_MAX_SECS",
                "must not be smaller than KEY_COOLDOWN_SECS",
            ));
        }
        if pool.revalidate_max < pool.revalidate {
            return Err(err(
                "KEY_REVALIDATE_MAX_SECS",
                "must not be smaller than KEY_REVALIDATE_SECS",
            ));
        }

        let upstream = UpstreamSettings {
            connect_timeout: secs("UPSTREAM_CONNECT_TIMEOUT_SECS", 10)?,
            first_byte_timeout: secs("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", 30)?,
            idle_timeout: secs("UPSTREAM_IDLE_TIMEOUT_SECS", 300)?,
            total_timeout: secs("UPSTREAM_TOTAL_TIMEOUT_SECS", 600)?,
            probe_timeout: secs("KEY_PROBE_TIMEOUT_SECS", 10)?,
            http2: flag("UPSTREAM_HTTP2", false)?,
        };
        if upstream.total_timeout < upstream.first_byte_timeout {
            return Err(err(
                "UPSTREAM_TOTAL_TIMEOUT_SECS",
                "must not be smaller than UPSTREAM_FIRST_BYTE_TIMEOUT_SECS",
            ));
        }

        let site_addr: SocketAddr = match get("LEPTOS_SITE_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(v) => v.parse().map_err(|_| {
                err(
                    "LEPTOS_SITE_ADDR",
                    format!("expected host:port such as 127.0.0.1:3000, got {v:?}"),
                )
            })?,
        };
        if allowed_tokens.is_empty() && !site_addr.ip().is_loopback() {
            return Err(err(
                "ALLOWED_TOKENS",
                format!(
                    "is empty, so the API would be open to anyone; refusing to listen on the non-loopback address {site_addr}. \
                     Set ALLOWED_TOKENS, or listen on 127.0.0.1"
                ),
            ));
        }

        Ok(Settings {
            api_keys,
            base_url,
            allowed_tokens,
            admin_token,
            max_retries: count("MAX_RETRIES", 3, 1, 100)? as u32,
            pool,
            upstream,
            max_body_bytes: count("MAX_BODY_BYTES", 20 * 1024 * 1024, 1024, 1 << 32)? as usize,
            media: super::media::MediaSettings {
                max_bytes: count("MEDIA_FETCH_MAX_BYTES", 20 * 1024 * 1024, 1, 1 << 32)? as usize,
                max_total_bytes: count("MEDIA_FETCH_MAX_TOTAL_BYTES", 40 * 1024 * 1024, 1, 1 << 34)? as usize,
                max_urls: count("MEDIA_FETCH_MAX_URLS", 16, 0, 1000)? as usize,
                timeout: secs("MEDIA_FETCH_TIMEOUT_SECS", 10)?,
                allow_private: flag("MEDIA_FETCH_ALLOW_PRIVATE", false)?,
            },
            site_addr,
            site_root: PathBuf::from(get("LEPTOS_SITE_ROOT").unwrap_or("target/site")),
            data_dir: PathBuf::from(get("DATA_DIR").unwrap_or("./data")),
            log_retention: Duration::from_secs(count("LOG_RETENTION_DAYS", 7, 1, 3650)? * 86_400),
            log_max_rows: count("LOG_MAX_ROWS", 1_000_000, 1000, 1 << 40)?,
            log_json: get("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")),
            shutdown_grace: secs("SHUTDOWN_GRACE_SECS", 20)?,
            max_connections: count("MAX_CONNECTIONS", 16_384, 1, 1 << 24)? as usize,
            header_read_timeout: secs("HEADER_READ_TIMEOUT_SECS", 30)?,
            server_threads: count(
                "SERVER_THREADS",
                std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
                1,
                1024,
            )? as usize,
            probe_model: get("KEY_PROBE_MODEL").unwrap_or("gemini-2.5-flash").to_string(),
            model_aliases: super::aliases::ModelAliases::parse(get("MODEL_ALIASES").unwrap_or(""))
                .map_err(|m| err("MODEL_ALIASES", m))?,
            model_suffixes: flag("MODEL_SUFFIXES", true)?,
            responses_per_token: count("RESPONSES_STORE_PER_TOKEN", 200, 0, 1 << 20)? as usize,
            responses_max_bytes: count("RESPONSES_STORE_MAX_BYTES", 256 << 20, 0, 1 << 40)? as usize,
            redis: match get("REDIS_URL") {
                None => None,
                Some(url)
                    if url.starts_with("redis://")
                        || url.starts_with("rediss://")
                        || url.starts_with("redis+unix://") =>
                {
                    Some(super::redis_sync::RedisSettings {
                        url: Secret::new(url),
                        prefix: get("REDIS_PREFIX").unwrap_or("gb:").to_string(),
                        replica: get("REPLICA_NAME")
                            .map(str::to_string)
                            .unwrap_or_else(default_replica_name),
                    })
                }
                Some(_) => {
                    return Err(err(
                        "REDIS_URL",
                        "must start with redis://, rediss:// (TLS) or redis+unix://",
                    ))
                }
            },
            proxies,
        })
    }
}

/// Comma-separated secrets: trimmed, empties and duplicates dropped, order kept.
fn secret_list(raw: Option<&str>) -> Vec<Secret> {
    let mut out: Vec<Secret> = Vec::new();
    for item in raw.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let s = Secret::new(item);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// This machine's host name and the process id: unique among replicas sharing a Redis.
fn default_replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_sane() {
        let s = Settings::from_map(&map(&[])).unwrap();
        assert_eq!(s.base_url, DEFAULT_BASE_URL);
        assert_eq!(s.pool.max_failures, 3);
        assert_eq!(s.max_retries, 3);
        assert!(s.api_keys.is_empty());
        assert_eq!(s.site_addr.to_string(), "127.0.0.1:3000");
    }

    #[test]
    fn keys_are_trimmed_deduplicated_and_never_rejected_for_shape() {
        let s = Settings::from_map(&map(&[("GEMINI_API_KEYS", " a-key , ,weird key!,a-key,AIzaXYZ ")])).unwrap();
        let keys: Vec<&str> = s.api_keys.iter().map(Secret::expose).collect();
        assert_eq!(keys, ["a-key", "weird key!", "AIzaXYZ"]);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = Settings::from_map(&map(&[("MAX_FAILURES", "three")])).unwrap_err();
        assert_eq!(e.setting, "MAX_FAILURES");
        let e = Settings::from_map(&map(&[("GEMINI_BASE_URL", "ftp://x")])).unwrap_err();
        assert_eq!(e.setting, "GEMINI_BASE_URL");
        let e = Settings::from_map(&map(&[("MODEL_ALIASES", "gpt-4o")])).unwrap_err();
        assert_eq!(e.setting, "MODEL_ALIASES");
        let e = Settings::from_map(&map(&[("KEY_COOLDOWN_MAX_SECS", "1e300")])).unwrap_err();
        assert_eq!(e.setting, "KEY_COOLDOWN_MAX_SECS");
        let e = Settings::from_map(&map(&[("LOG_RETENTION_DAYS", "18446744073709551615")])).unwrap_err();
        assert_eq!(e.setting, "LOG_RETENTION_DAYS");
        let e = Settings::from_map(&map(&[("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "-1")])).unwrap_err();
        assert_eq!(e.setting, "UPSTREAM_FIRST_BYTE_TIMEOUT_SECS");
        assert!(e.to_string().contains("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS"));
        let e = Settings::from_map(&map(&[("GEMINI_PROXIES", "http://a:1,gopher://u:hunter22@b:2")])).unwrap_err();
        assert_eq!(e.setting, "GEMINI_PROXIES");
        assert!(!e.to_string().contains("hunter22"), "{e}");
    }

    #[test]
    fn proxies_are_optional_and_keep_their_order() {
        assert!(Settings::from_map(&map(&[])).unwrap().proxies.is_empty());
        let s = Settings::from_map(&map(&[(
            "GEMINI_PROXIES",
            "http://u:p@10.0.0.1:3128, socks5://10.0.0.2:1080,https://p.example",
        )]))
        .unwrap();
        let labels: Vec<&str> = s.proxies.iter().map(|p| p.label()).collect();
        assert_eq!(labels, ["10.0.0.1:3128", "10.0.0.2:1080", "p.example:443"]);
    }

    #[test]
    fn open_api_refuses_public_address() {
        let e = Settings::from_map(&map(&[("LEPTOS_SITE_ADDR", "0.0.0.0:3000")])).unwrap_err();
        assert_eq!(e.setting, "ALLOWED_TOKENS");
        let ok = Settings::from_map(&map(&[("LEPTOS_SITE_ADDR", "0.0.0.0:3000"), ("ALLOWED_TOKENS", "t1")])).unwrap();
        assert_eq!(ok.allowed_tokens.len(), 1);
    }

    #[test]
    fn dotenv_files_layer_under_the_environment() {
        let dir = std::env::temp_dir().join(format!("gb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".env"), "MAX_RETRIES=5\nKEY_COOLDOWN_SECS=7\n").unwrap();
        std::fs::write(dir.join(".env.local"), "MAX_RETRIES=6\n").unwrap();
        let s = Settings::load_from(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(s.max_retries, 6);
        assert_eq!(s.pool.cooldown, Duration::from_secs(7));
    }
}
