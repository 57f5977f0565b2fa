//! OpenAI speech ⇄ Gemini text-to-speech: `audio/speech` (`model`, `input`, `voice`,
//! `instructions`, `response_format`) to a Gemini TTS model (`generateContent` with audio output
//! and a prebuilt voice); Google's 24 kHz 16-bit mono PCM served as `wav` or `pcm`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::log_ignored;
use crate::gateway::error::GatewayError;
use crate::gateway::gemini::{Content, GenerateContentRequest, GenerateContentResponse, GenerationConfig, Part};

#[derive(Debug, Clone, Deserialize)]
pub struct SpeechRequest {
    pub model: String,
    pub input: String,
    /// A voice name, or `{"id": name}`.
    pub voice: Value,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub response_format: Option<String>,
    /// `speed`, `stream_format`, …: accepted, ignored (Gemini's pace follows the prompt).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How the audio is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Wav,
    Pcm,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Wav => "audio/wav",
            Format::Pcm => "audio/pcm",
        }
    }
}

/// OpenAI's voices, each given a Gemini voice of a similar character.
const VOICES: &[(&str, &str)] = &[
    ("alloy", "Zephyr"),
    ("ash", "Charon"),
    ("ballad", "Aoede"),
    ("coral", "Kore"),
    ("echo", "Puck"),
    ("fable", "Fenrir"),
    ("onyx", "Orus"),
    ("nova", "Leda"),
    ("sage", "Iapetus"),
    ("shimmer", "Autonoe"),
    ("verse", "Enceladus"),
    ("marin", "Sulafat"),
    ("cedar", "Algieba"),
];

/// The Gemini voice for an OpenAI voice name; any other name is taken as a Gemini voice
/// (`kore` → `Kore`), which Google checks.
pub fn voice(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    if let Some((_, gemini)) = VOICES.iter().find(|(openai, _)| *openai == lower) {
        return (*gemini).to_string();
    }
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// The TTS body and how to serve the answer.
pub fn to_gemini(req: &SpeechRequest) -> Result<(GenerateContentRequest, Format), GatewayError> {
    log_ignored("speech", req.extra.keys().map(String::as_str));
    let format = match req.response_format.as_deref() {
        // OpenAI's default is mp3, which Google does not produce: WAV is the nearest.
        None | Some("wav") => Format::Wav,
        Some("pcm") => Format::Pcm,
        Some(other) => {
            return Err(GatewayError::invalid(
                format!("response_format {other:?} is not available: Gemini speaks 24 kHz 16-bit PCM, served as \"wav\" or \"pcm\""),
                Some("response_format"),
            ))
        }
    };
    if req.input.trim().is_empty() {
        return Err(GatewayError::invalid("input must not be empty", Some("input")));
    }
    let name = match &req.voice {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("id").and_then(Value::as_str).unwrap_or("").to_string(),
        _ => String::new(),
    };
    if name.trim().is_empty() {
        return Err(GatewayError::invalid("voice must be a voice name", Some("voice")));
    }
    let text = match req.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
        Some(how) => format!("{how}\n\n{}", req.input),
        None => req.input.clone(),
    };
    let mut config = GenerationConfig::default();
    config.extra.insert("responseModalities".into(), json!(["AUDIO"]));
    config.extra.insert(
        "speechConfig".into(),
        json!({"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice(&name)}}}),
    );
    let body = GenerateContentRequest {
        contents: vec![Content {
            role: Some("user".into()),
            parts: vec![Part::text(text)],
        }],
        generation_config: Some(config),
        ..Default::default()
    };
    Ok((body, format))
}

/// The audio of a TTS answer, as the client asked for it. A streamed answer folded into one
/// holds the audio in several parts, in order: their samples are joined.
pub fn audio(resp: &GenerateContentResponse, format: Format) -> Result<Vec<u8>, GatewayError> {
    use base64::Engine as _;
    let blobs: Vec<&crate::gateway::gemini::Blob> = resp
        .candidates
        .first()
        .and_then(|c| c.content.as_ref())
        .map(|c| {
            c.parts
                .iter()
                .filter_map(|p| p.inline_data.as_ref())
                .filter(|b| b.mime_type.starts_with("audio/"))
                .collect()
        })
        .unwrap_or_default();
    let Some(blob) = blobs.first() else {
        return Err(GatewayError::BadUpstreamResponse {
            message: "Gemini's answer held no audio".into(),
        });
    };
    let mut pcm = Vec::new();
    for b in &blobs {
        let samples = base64::engine::general_purpose::STANDARD
            .decode(b.data.as_bytes())
            .map_err(|e| GatewayError::BadUpstreamResponse {
                message: format!("unreadable audio from Gemini: {e}"),
            })?;
        pcm.extend_from_slice(&samples);
    }
    let rate = blob
        .mime_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("rate="))
        .and_then(|r| r.parse::<u32>().ok())
        .unwrap_or(24_000);
    Ok(match format {
        Format::Pcm => pcm,
        Format::Wav => wav(&pcm, rate),
    })
}

/// A WAV file (RIFF, 16-bit mono) around PCM samples.
pub fn wav(pcm: &[u8], rate: u32) -> Vec<u8> {
    let len = pcm.len() as u32;
    let mut out = Vec::with_capacity(44 + pcm.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(pcm);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> SpeechRequest {
        serde_json::from_value(v).expect("request")
    }

    #[test]
    fn voices_and_formats() {
        assert_eq!(voice("alloy"), "Zephyr");
        assert_eq!(voice("kore"), "Kore");
        assert_eq!(voice("Puck"), "Puck");
        let (body, format) = to_gemini(&req(
            json!({"model": "m", "input": "Hi", "voice": "nova", "instructions": "Cheerfully", "speed": 1.5}),
        ))
        .expect("ok");
        assert_eq!(format, Format::Wav);
        let v = serde_json::to_value(body).expect("json");
        assert_eq!(v["contents"][0]["parts"][0]["text"], "Cheerfully\n\nHi");
        assert_eq!(v["generationConfig"]["responseModalities"], json!(["AUDIO"]));
        assert_eq!(
            v["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
            "Leda"
        );
        let e = to_gemini(&req(
            json!({"model": "m", "input": "Hi", "voice": "nova", "response_format": "mp3"}),
        ))
        .expect_err("mp3");
        assert_eq!(e.to_openai().error.param.as_deref(), Some("response_format"));
        assert!(e.to_string().contains("wav"));
    }

    #[test]
    fn streamed_audio_parts_are_joined_in_order() {
        // "AQI=" is [1, 2], "AwQ=" is [3, 4]: a folded stream keeps each event's part.
        let resp: GenerateContentResponse =
            serde_json::from_value(json!({"candidates": [{"content": {"role": "model", "parts": [
                {"inlineData": {"mimeType": "audio/L16;codec=pcm;rate=24000", "data": "AQI="}},
                {"inlineData": {"mimeType": "audio/L16;codec=pcm;rate=24000", "data": "AwQ="}}
            ]}}]}))
            .expect("response");
        assert_eq!(audio(&resp, Format::Pcm).expect("audio"), vec![1, 2, 3, 4]);
        let empty: GenerateContentResponse =
            serde_json::from_value(json!({"candidates": [{"content": {"parts": [{"text": "no"}]}}]}))
                .expect("response");
        assert!(audio(&empty, Format::Pcm).is_err());
    }

    #[test]
    fn wav_header_is_riff_pcm() {
        let w = wav(&[1, 0, 2, 0], 24_000);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([w[4], w[5], w[6], w[7]]), 40);
        assert_eq!(&w[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes([w[24], w[25], w[26], w[27]]), 24_000);
        assert_eq!(&w[36..40], b"data");
        assert_eq!(&w[44..], &[1, 0, 2, 0]);
    }
}
