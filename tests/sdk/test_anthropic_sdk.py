"""The official Anthropic Python SDK against the gateway (release binary) and the mock Gemini:
messages.create and messages.stream, each with a tool loop, count_tokens, and errors."""

import os

import anthropic
import pytest

URL = os.environ["GATEWAY_URL"]
TOKEN = os.environ["GATEWAY_TOKEN"]
# MODEL_ALIASES in scripts/sdk-test.sh maps claude-* to a Gemini model.
MODEL = "claude-gateway-test"

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


@pytest.fixture
def client():
    return anthropic.Anthropic(base_url=URL, api_key=TOKEN, max_retries=0)


def test_create_with_a_tool_loop(client):
    question = {"role": "user", "content": "weather? [[tool:get_weather]]"}
    first = client.messages.create(model=MODEL, max_tokens=8192, tools=TOOLS, messages=[question])
    assert first.model == MODEL
    assert first.stop_reason == "tool_use"
    tool = next(b for b in first.content if b.type == "tool_use")
    assert tool.name == "get_weather" and tool.input == {"city": "Paris"}
    assert any(b.type == "thinking" and b.signature for b in first.content)
    second = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=TOOLS,
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert "get_weather returned" in second.content[0].text
    assert second.usage.input_tokens > 0 and second.usage.output_tokens > 0


def test_stream_with_a_tool_loop(client):
    question = {"role": "user", "content": "weather? [[tool:get_weather]]"}
    with client.messages.stream(model=MODEL, max_tokens=512, tools=TOOLS, messages=[question]) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert first.stop_reason == "tool_use"
    tool = next(b for b in first.content if b.type == "tool_use")
    assert tool.input == {"city": "Paris"}
    messages = [
        question,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "rain"}]},
    ]
    with client.messages.stream(model=MODEL, max_tokens=512, tools=TOOLS, messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "get_weather returned" in text
    assert final.stop_reason == "end_turn"


def test_thinking_streams_as_thinking_blocks(client):
    with client.messages.stream(
        model=MODEL,
        max_tokens=512,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "ponder [[think]]"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == "Thinking it over."
    assert final.content[-1].text == "Echo: ponder [[think]]"


def test_count_tokens(client):
    r = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "one two three"}])
    assert r.input_tokens >= 3


def test_errors_are_anthropic_errors(client):
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="mistral-large", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    bad = anthropic.Anthropic(base_url=URL, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
