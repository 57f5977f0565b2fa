"""The official OpenAI Python SDK against the gateway (release binary) and the mock Gemini."""

import json
import os

import openai
import pytest

URL = os.environ["GATEWAY_URL"]
TOKEN = os.environ["GATEWAY_TOKEN"]
MODEL = "gemini-2.5-flash"


@pytest.fixture
def client():
    return openai.OpenAI(base_url=f"{URL}/v1", api_key=TOKEN, max_retries=0)


def test_chat_completion(client):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello sdk"}],
        temperature=0.1,
    )
    assert r.choices[0].message.content == "Echo: hello sdk"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_api_v1_prefix(client):
    c = openai.OpenAI(base_url=f"{URL}/api/v1", api_key=TOKEN, max_retries=0)
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == "Echo: x"


def test_failing_keys_are_invisible(client):
    # One of the three pool keys is invalid; no request may fail because of it.
    for i in range(9):
        r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"n{i}"}])
        assert r.choices[0].message.content == f"Echo: n{i}"


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "Echo: one two three"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 4


def test_max_tokens_gives_length(client):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "a b c d e"}], max_tokens=2
    )
    assert r.choices[0].finish_reason == "length"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]


def test_tool_calling_loop(client):
    messages = [{"role": "user", "content": "Weather in Paris? [[tool:get_weather]]"}]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, tool_choice="auto")
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})})
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assert r.choices[0].message.content == 'The tool get_weather returned {"temp_c":21}'
    assert r.choices[0].finish_reason == "stop"


def test_streamed_tool_calls_reassemble(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x [[tool:get_weather]]"}],
        tools=TOOLS,
        stream=True,
    )
    calls, finish = {}, None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": tc.id, "name": "", "args": ""})
                entry["name"] += tc.function.name or ""
                entry["args"] += tc.function.arguments or ""
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["args"]) == {"city": "Paris"}
    assert calls[0]["id"]


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids


def test_errors_raise_the_usual_exceptions(client):
    bad = openai.OpenAI(base_url=f"{URL}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gemini-unknown", messages=[{"role": "user", "content": "x"}])
    assert "not found" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "[[block]]"}])
    assert e.value.code == "content_filter"


def test_embeddings(client):
    r = client.embeddings.create(model="gemini-embedding-001", input=["hello", "world"], dimensions=5)
    assert len(r.data) == 2 and r.data[1].index == 1
    assert len(r.data[0].embedding) == 5
    assert r.usage.prompt_tokens > 0
    # The SDK asks for base64 by default when no format is given and decodes it itself.
    r = client.embeddings.create(model="gemini-embedding-001", input="hello")
    assert len(r.data[0].embedding) == 8


def test_json_schema_and_reasoning_and_images_are_accepted(client):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]}],
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        reasoning_effort="low",
    )
    assert r.choices[0].message.content == "Echo: describe"


def test_reasoning_content_is_separate(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hmm [[think]]"}])
    msg = r.choices[0].message
    assert msg.content == "Echo: hmm [[think]]"
    assert msg.model_extra.get("reasoning_content") == "Thinking it over."
    assert r.usage.completion_tokens_details.reasoning_tokens == 3


def test_logprobs_and_grounding(client):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi there"}], logprobs=True, top_logprobs=2,
        extra_body={"google": {"tools": [{"google_search": {}}]}},
    )
    lp = r.choices[0].logprobs.content
    assert [t.token for t in lp] == ["Echo:", "hi", "there"]
    assert lp[0].top_logprobs[1].token == "alt"
    ann = r.choices[0].message.annotations
    assert ann[0].url_citation.url == "https://example.com/source"


def test_remote_image_refused_for_private_host(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]}])
    assert "could not be fetched" in str(e.value)


def test_images_generate_with_imagen_and_a_gemini_image_model(client):
    import base64

    r = client.images.generate(model="dall-e-3", prompt="a lighthouse", n=2, size="1024x1024", response_format="b64_json")
    assert len(r.data) == 2
    assert all(base64.b64decode(d.b64_json).startswith(b"\x89PNG") for d in r.data)
    r = client.images.generate(model="gemini-2.5-flash-image", prompt="a lighthouse")
    assert base64.b64decode(r.data[0].b64_json).startswith(b"\x89PNG")
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(model="dall-e-3", prompt="x", response_format="url")
    assert "b64_json" in str(err.value)


def test_audio_speech_as_wav_and_pcm(client):
    wav = client.audio.speech.create(model="tts-1", voice="alloy", input="hello from the sdk", response_format="wav")
    data = wav.read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    pcm = client.audio.speech.create(model="gemini-2.5-flash-preview-tts", voice="Kore", input="hi", response_format="pcm")
    assert len(pcm.read()) == 2400 * 2
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="x", response_format="mp3")


def test_files_upload_and_use_in_chat(client):
    f = client.files.create(file=("notes.txt", b"meeting notes: ship it", "text/plain"), purpose="user_data")
    assert f.id.startswith("file-") and f.filename == "notes.txt" and f.bytes == 22
    for i in range(3):
        r = client.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": [
                {"type": "file", "file": {"file_id": f.id}},
                {"type": "text", "text": f"summarize {i}"},
            ]}],
        )
        assert r.choices[0].message.content.startswith("Echo:")
    assert client.files.retrieve(f.id).id == f.id
    assert f.id in [x.id for x in client.files.list()]
    assert client.files.delete(f.id).deleted
