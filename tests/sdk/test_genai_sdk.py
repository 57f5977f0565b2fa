"""Google's official google-genai SDK against the gateway's Gemini-native routes."""

import os

import pytest
from google import genai
from google.genai import errors, types

URL = os.environ["GATEWAY_URL"]
TOKEN = os.environ["GATEWAY_TOKEN"]
MODEL = "gemini-2.5-flash"


def make_client(key=TOKEN, version=None):
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=URL, api_version=version))


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_both_api_versions(version):
    c = make_client(version=version)
    assert c.models.generate_content(model=MODEL, contents="v").text == "Echo: v"
    assert "models/gemini-2.5-flash" in [m.name for m in c.models.list()]
    assert c.models.get(model=MODEL).name == "models/gemini-2.5-flash"


@pytest.fixture
def client():
    return make_client()


def test_generate(client):
    r = client.models.generate_content(model=MODEL, contents="hello genai")
    assert r.text == "Echo: hello genai"
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata.total_token_count > 0


def test_failing_key_is_skipped(client):
    for i in range(6):
        assert client.models.generate_content(model=MODEL, contents=f"n{i}").text == f"Echo: n{i}"


def test_stream(client):
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="a b c"))
    assert len(chunks) == 4
    assert "".join(c.text or "" for c in chunks) == "Echo: a b c"


def test_count_tokens(client):
    assert client.models.count_tokens(model=MODEL, contents="one two three").total_tokens == 3


def test_embed(client):
    r = client.models.embed_content(
        model="gemini-embedding-001",
        contents=["first", "second"],
        config=types.EmbedContentConfig(output_dimensionality=6),
    )
    assert len(r.embeddings) == 2
    assert len(r.embeddings[0].values) == 6


def test_list_and_get_models(client):
    names = [m.name for m in client.models.list()]
    assert "models/gemini-2.5-flash" in names
    assert client.models.get(model="gemini-2.5-pro").name == "models/gemini-2.5-pro"


def test_thought_signature_survives(client):
    r = client.models.generate_content(model=MODEL, contents="look it up [[tool:lookup]]")
    calls = [p for p in r.candidates[0].content.parts if p.function_call]
    assert calls[0].function_call.name == "lookup"
    assert calls[0].thought_signature == b"mock-signature"


def test_errors_raise_the_usual_exceptions(client):
    bad = make_client("wrong-token")
    with pytest.raises(errors.ClientError) as e:
        bad.models.generate_content(model=MODEL, contents="x")
    assert e.value.code == 401
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(model="gemini-unknown", contents="x")
    assert e.value.code == 404
    assert "gemini-unknown" in str(e.value)


def test_files_and_caches_stay_on_their_key(client):
    import io

    uploaded = client.files.upload(
        file=io.BytesIO(b"a document worth caching " * 40),
        config=types.UploadFileConfig(mime_type="text/plain", display_name="doc"),
    )
    assert uploaded.name.startswith("files/")
    assert uploaded.state == types.FileState.ACTIVE
    assert client.files.get(name=uploaded.name).display_name == "doc"
    assert uploaded.name in [f.name for f in client.files.list(config=types.ListFilesConfig(page_size=1))]
    # Several calls: rotation would reach a key that does not own the file; none fails.
    for i in range(4):
        r = client.models.generate_content(model=MODEL, contents=[uploaded, f"summary {i}"])
        assert r.text.startswith("Echo:")
    cache = client.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(contents=[uploaded], ttl="600s"),
    )
    assert cache.name.startswith("cachedContents/")
    for i in range(3):
        r = client.models.generate_content(
            model=MODEL, contents=f"q{i}", config=types.GenerateContentConfig(cached_content=cache.name)
        )
        assert r.text == f"Echo: q{i}"
    client.caches.delete(name=cache.name)
    client.files.delete(name=uploaded.name)
    with pytest.raises(errors.ClientError) as e:
        client.files.get(name=uploaded.name)
    assert e.value.code == 403
