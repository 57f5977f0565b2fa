"""The official OpenAI Python SDK's Responses API against the gateway (release binary) and the
mock Gemini: responses.create whole and streamed, each with a tool loop, the stream helper,
previous_response_id, and errors."""

import json
import os

import openai
import pytest

URL = os.environ["GATEWAY_URL"]
TOKEN = os.environ["GATEWAY_TOKEN"]
# MODEL_ALIASES in scripts/sdk-test.sh maps gpt-* to a Gemini model.
MODEL = "gpt-5-codex"

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
]


@pytest.fixture
def client():
    return openai.OpenAI(base_url=f"{URL}/v1", api_key=TOKEN, max_retries=0)


def test_create_with_a_tool_loop(client):
    question = {"role": "user", "content": "weather? [[tool:get_weather]]"}
    first = client.responses.create(
        model=MODEL, input=[question], tools=TOOLS, reasoning={"effort": "low", "summary": "auto"}, store=False
    )
    assert first.model == MODEL
    assert first.status == "completed"
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    reasoning = next(item for item in first.output if item.type == "reasoning")
    assert reasoning.encrypted_content
    # Stateless, as Codex runs: everything goes back, plus the tool's output.
    second = client.responses.create(
        model=MODEL,
        tools=TOOLS,
        store=False,
        input=[question]
        + [item.model_dump(exclude_none=True) for item in first.output]
        + [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert "get_weather returned" in second.output_text
    assert second.usage.input_tokens > 0 and second.usage.output_tokens > 0
    assert second.usage.total_tokens >= second.usage.input_tokens + second.usage.output_tokens


def test_previous_response_id_continues_a_conversation(client):
    first = client.responses.create(model=MODEL, input="weather? [[tool:get_weather]]", tools=TOOLS)
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model=MODEL,
        tools=TOOLS,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}],
    )
    assert "get_weather returned" in second.output_text
    assert second.previous_response_id == first.id
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, previous_response_id="resp_unknown", input="x")
    assert err.value.param == "previous_response_id" and "not found" in err.value.message


def test_stream_helper_with_a_tool_loop(client):
    with client.responses.stream(
        model=MODEL, input="weather? [[tool:get_weather]]", tools=TOOLS, reasoning={"summary": "auto"}
    ) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    call = next(item for item in first.output if item.type == "function_call")
    with client.responses.stream(
        model=MODEL,
        tools=TOOLS,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "snow"}],
    ) as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert "get_weather returned" in text
    assert final.output_text == text


def test_create_streamed_events_are_numbered(client):
    events = list(client.responses.create(model=MODEL, input="one two three four", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3 and "".join(deltas) == "Echo: one two three four"
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Echo: one two three four"


def test_errors_in_openais_shape(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, input="x", tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}])
    assert "file_search" in str(err.value)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="mistral-large", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{URL}/v1", api_key="wrong", max_retries=0).responses.create(model=MODEL, input="x")
