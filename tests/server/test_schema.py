"""Schemathesis fuzzes every route of the app's own OpenAPI schema: no request may produce a 5xx."""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import FakeClassifier, FakeGAN, FakeImageClassifier, FakeText2Image, LiveServer


MODEL_FOR = {"/v1/images/generations": "digits", "/v1/classify": "sentiment", "/v1/images/classifications": "pixels"}


@pytest.fixture(scope="module")
def fuzz_server(tiny_run):
    # small limits keep every generated request quick
    live = LiveServer({"tiny": str(tiny_run), "digits": FakeGAN(8, 1, list("0123456789")), "faces": FakeGAN(8, 3),
                       "t2i": FakeText2Image(8, 3), "sentiment": FakeClassifier(),
                       "pixels": FakeImageClassifier()},
                      max_tokens_limit=32, max_n=4, request_timeout=5)
    yield live
    live.stop()


def test_no_server_errors(fuzz_server):
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    statuses = []
    for op in operations:
        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            body = case.body
            if isinstance(body, dict) and isinstance(body.get("model"), str) and len(body["model"]) % 2 == 0:
                body["model"] = MODEL_FOR.get(case.path, "tiny")  # half the time, reach past the model lookup
            response = case.call(timeout=30)
            statuses.append(response.status_code)
            assert response.status_code < 500, (f"{case.method} {case.path} {case.body!r} -> "
                                                f"{response.status_code} {response.text[:300]}")
        check()
    assert sum(200 <= s < 300 for s in statuses) >= 10, "the fuzzer hardly ever got past validation"
