//! Remote media in chat requests: `image_url` parts with an http(s) URL are fetched server-side,
//! within size and time limits, and inlined as data URLs before translation.
//!
//! Fetching URLs for clients is a server-side request forgery risk, so by default hosts that
//! resolve to loopback, private, link-local or otherwise non-public addresses are refused
//! (`MEDIA_FETCH_ALLOW_PRIVATE=true` lifts this, e.g. for tests on one machine). The check
//! happens at connect time, in the client's DNS resolver, so a redirect or a name that resolves
//! differently the second time (DNS rebinding) cannot reach a private address either. Every
//! refusal or failure gets the same text, so the route cannot be used to scan ports.
//! A request may name at most `MEDIA_FETCH_MAX_URLS` URLs and inline at most
//! `MEDIA_FETCH_MAX_TOTAL_BYTES` in all.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;

use super::error::GatewayError;
use super::openai::{ChatCompletionRequest, ContentPart, MessageContent};

#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub max_bytes: usize,
    pub max_total_bytes: usize,
    pub max_urls: usize,
    pub timeout: Duration,
    pub allow_private: bool,
}

/// The one answer for media that is refused or unreachable, whatever the reason.
const UNREACHABLE: &str = "the URL could not be fetched (unreachable, not allowed, not media, or too large)";

/// Resolves names, keeping public addresses only: the connect-time half of the SSRF guard.
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("no public address".into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[derive(Debug, Clone)]
pub struct MediaFetcher {
    http: reqwest::Client,
    settings: MediaSettings,
}

/// Whether an address is one a public URL may point at.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 shared address space
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
                || o[0] >= 224)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0]) // 64:ff9b::/96 NAT64
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // 64:ff9b:1::/48 local-use NAT64
                || s[0] == 0x2002 // 2002::/16 6to4
                || s[0..6] == [0, 0, 0, 0, 0, 0] // ::/96 IPv4-compatible
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

impl MediaFetcher {
    pub fn new(settings: MediaSettings) -> Result<Self, String> {
        let allow_private = settings.allow_private;
        // Redirects are followed only to hosts given as names or public IP literals; names are
        // checked again below before the first request.
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 3 {
                return attempt.error("too many redirects");
            }
            let ok = match attempt.url().host() {
                Some(url::Host::Ipv4(ip)) => allow_private || is_public(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => allow_private || is_public(IpAddr::V6(ip)),
                Some(url::Host::Domain(d)) => allow_private || d != "localhost",
                None => false,
            };
            if ok {
                attempt.follow()
            } else {
                attempt.error("redirect to a non-public address")
            }
        });
        // No system proxy (HTTP(S)_PROXY): the proxy would resolve and connect to the host itself,
        // past the resolver below that refuses non-public addresses.
        let mut builder = reqwest::Client::builder().no_proxy();
        if !allow_private {
            builder = builder.dns_resolver(std::sync::Arc::new(PublicOnly));
        }
        let http = builder
            .redirect(policy)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("gemini-balance/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the media HTTP client: {e}"))?;
        Ok(Self { http, settings })
    }

    /// Replaces every http(s) `image_url` in `req` with a data URL. Returns `None` when the
    /// request has no remote media (the common case: no copy is made).
    pub async fn inline_remote_media(
        &self,
        req: &ChatCompletionRequest,
    ) -> Result<Option<ChatCompletionRequest>, GatewayError> {
        let mut urls: Vec<(String, String)> = Vec::new();
        for (i, msg) in req.messages.iter().enumerate() {
            if let Some(MessageContent::Parts(parts)) = &msg.content {
                for (j, part) in parts.iter().enumerate() {
                    if let ContentPart::ImageUrl { image_url } = part {
                        if is_http(&image_url.url) {
                            urls.push((
                                image_url.url.clone(),
                                format!("messages[{i}].content[{j}].image_url.url"),
                            ));
                        }
                    }
                }
            }
        }
        if urls.is_empty() {
            return Ok(None);
        }
        let mut fetched = self.inline_urls(&urls).await?.into_iter();
        let mut req = req.clone();
        for msg in req.messages.iter_mut() {
            if let Some(MessageContent::Parts(parts)) = &mut msg.content {
                for part in parts.iter_mut() {
                    if let ContentPart::ImageUrl { image_url } = part {
                        if is_http(&image_url.url) {
                            if let Some(data_url) = fetched.next() {
                                image_url.url = data_url;
                            }
                        }
                    }
                }
            }
        }
        Ok(Some(req))
    }

    /// Fetches `(url, param)` pairs into data URLs, in order, within the per-request limits
    /// (`MEDIA_FETCH_MAX_URLS`, `MEDIA_FETCH_MAX_TOTAL_BYTES`). Every dialect's remote media go
    /// through here; the error names the `param` of the media that failed.
    pub async fn inline_urls(&self, urls: &[(String, String)]) -> Result<Vec<String>, GatewayError> {
        if urls.len() > self.settings.max_urls {
            return Err(GatewayError::invalid(
                format!(
                    "The request names {} media URLs; at most {} are fetched per request (MEDIA_FETCH_MAX_URLS). Send the media inline instead.",
                    urls.len(),
                    self.settings.max_urls
                ),
                Some("messages"),
            ));
        }
        let mut budget = self.settings.max_total_bytes;
        let mut out = Vec::with_capacity(urls.len());
        for (url, param) in urls {
            let limit = self.settings.max_bytes.min(budget);
            let (data_url, used) = self.fetch(url, limit).await.map_err(|reason| {
                tracing::debug!(%param, reason, "remote media refused");
                if reason == BUDGET && limit < self.settings.max_bytes {
                    GatewayError::invalid(
                        format!(
                            "The media in this request add up to more than {} bytes (MEDIA_FETCH_MAX_TOTAL_BYTES).",
                            self.settings.max_total_bytes
                        ),
                        Some(param),
                    )
                } else {
                    GatewayError::invalid(
                        format!("Could not fetch the media at {param}: {UNREACHABLE}."),
                        Some(param),
                    )
                }
            })?;
            budget = budget.saturating_sub(used);
            out.push(data_url);
        }
        Ok(out)
    }

    /// Fetches one URL into a data URL and the number of bytes it held. The error is a reason
    /// for the log only; clients get one generic text.
    async fn fetch(&self, raw: &str, limit: usize) -> Result<(String, usize), &'static str> {
        let url = url::Url::parse(raw).map_err(|_| "invalid URL")?;
        if !self.settings.allow_private {
            // Literal addresses never reach the resolver: check them here.
            let public = match url.host() {
                Some(url::Host::Ipv4(ip)) => is_public(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => is_public(IpAddr::V6(ip)),
                Some(url::Host::Domain(_)) => true,
                None => false,
            };
            if !public {
                return Err("not a public address");
            }
        }
        let resp = self.http.get(url).send().await.map_err(|_| "unreachable")?;
        if !resp.status().is_success() {
            return Err("not a success status");
        }
        let mime = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !(mime.starts_with("image/")
            || mime.starts_with("audio/")
            || mime.starts_with("video/")
            || mime == "application/pdf")
        {
            return Err("not media");
        }
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(BUDGET);
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| "broken body")?;
            if body.len() + chunk.len() > limit {
                return Err(BUDGET);
            }
            body.extend_from_slice(&chunk);
        }
        let used = body.len();
        Ok((
            format!(
                "data:{mime};base64,{}",
                base64::engine::general_purpose::STANDARD.encode(body)
            ),
            used,
        ))
    }
}

const BUDGET: &str = "over the size limit";

fn is_http(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://")) && !super::owners::is_google_file(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "198.18.0.1",
            "198.19.255.255",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:ffff::1",
            "2002:a00:1::1",
            "::a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "142.250.74.78", "2a00:1450:4001:80e::200e"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
