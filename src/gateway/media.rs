//! Remote media in chat requests: `image_url` parts with an http(s) URL are fetched server-side,
//! within size and time limits, and inlined as data URLs before translation.
//!
//! Fetching URLs for clients is a server-side request forgery risk, so by default hosts that
//! resolve to loopback, private, link-local or otherwise non-public addresses are refused
//! (`MEDIA_FETCH_ALLOW_PRIVATE=true` lifts this, e.g. for tests on one machine).

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;

use super::error::GatewayError;
use super::openai::{ChatCompletionRequest, ContentPart, MessageContent};

#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub max_bytes: usize,
    pub timeout: Duration,
    pub allow_private: bool,
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
                || (s[0] & 0xffc0) == 0xfe80) // link local
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
        let http = reqwest::Client::builder()
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
        let has_remote = req.messages.iter().any(|m| match &m.content {
            Some(MessageContent::Parts(parts)) => parts
                .iter()
                .any(|p| matches!(p, ContentPart::ImageUrl { image_url } if is_http(&image_url.url))),
            _ => false,
        });
        if !has_remote {
            return Ok(None);
        }
        let mut req = req.clone();
        for (i, msg) in req.messages.iter_mut().enumerate() {
            let Some(MessageContent::Parts(parts)) = &mut msg.content else {
                continue;
            };
            for (j, part) in parts.iter_mut().enumerate() {
                if let ContentPart::ImageUrl { image_url } = part {
                    if is_http(&image_url.url) {
                        let param = format!("messages[{i}].content[{j}].image_url.url");
                        image_url.url = self.fetch(&image_url.url).await.map_err(|e| {
                            GatewayError::invalid(
                                format!("Could not fetch the image at {}: {e}", image_url.url),
                                Some(&param),
                            )
                        })?;
                    }
                }
            }
        }
        Ok(Some(req))
    }

    /// Fetches one URL into a data URL.
    async fn fetch(&self, raw: &str) -> Result<String, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("invalid URL ({e})"))?;
        let host = url.host_str().ok_or("the URL has no host")?.to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        if !self.settings.allow_private {
            let addrs: Vec<IpAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
                .await
                .map_err(|e| format!("cannot resolve {host} ({e})"))?
                .map(|a| a.ip())
                .collect();
            if addrs.is_empty() || addrs.iter().any(|ip| !is_public(*ip)) {
                return Err(format!("{host} is not a public address"));
            }
        }
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the server answered HTTP {}", resp.status().as_u16()));
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
            return Err(format!("expected an image, got content type {mime:?}"));
        }
        if resp
            .content_length()
            .is_some_and(|n| n as usize > self.settings.max_bytes)
        {
            return Err(format!("larger than the {} byte limit", self.settings.max_bytes));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.without_url().to_string())?;
            if body.len() + chunk.len() > self.settings.max_bytes {
                return Err(format!("larger than the {} byte limit", self.settings.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(body)
        ))
    }
}

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
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
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "142.250.74.78", "2a00:1450:4001:80e::200e"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
