"""Request bodies of the /v1 routes, as pydantic models: bounds are checked here, at the edge.

Unknown fields are refused (400 naming the field) rather than ignored, so a client never
believes a parameter took effect when genforge does not implement it. Numbers are strict: `true`
is not 1, "5" is not 5, NaN and infinity are no temperature.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def Int(**bounds):
    """An integer that is sent as one: JSON true, 1.0 and "1" are refused."""
    return Annotated[int, Field(strict=True, **bounds)]


def Float(**bounds):
    """A finite number (NaN and infinity are refused with "finite"), not a boolean."""
    return Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds)]


Seed = Int(ge=-(2**63), le=2**64 - 1)
Stop = str | Annotated[list[str], Field(max_length=4)] | None
TokenIds = Annotated[list[Int(ge=0)], Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(Strict):
    include_usage: Annotated[bool, Field(strict=True)] = False


class Sampling(Strict):
    """Parameters shared by completions and chat."""
    model: str
    temperature: Float(ge=0, le=2) = 1.0
    top_p: Float(gt=0, le=1) = 1.0
    top_k: Int(ge=1) | None = None  # genforge extra: sample from the k most likely tokens
    n: Int(ge=1, le=256) = 1
    stop: Stop = None
    seed: Seed | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: Float(ge=-2, le=2) | None = None  # only 0 is supported
    frequency_penalty: Float(ge=-2, le=2) | None = None  # only 0 is supported
    logit_bias: dict[str, Float()] | None = None  # only empty is supported
    user: str | None = None  # accepted and ignored


class CompletionRequest(Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1)] | TokenIds | Annotated[list[TokenIds], Field(min_length=1)]
    max_tokens: Int(ge=1) | None = 16
    logprobs: Int(ge=0, le=5) | None = None
    echo: bool = False
    suffix: str | None = None  # not supported (400) unless empty
    best_of: Int(ge=1, le=256) | None = None  # only best_of == n is supported


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. "name"; tool fields are refused in the route
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | dict[str, Any]] | None = None


class ChatRequest(Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: Int(ge=1) | None = None  # deprecated alias of max_completion_tokens
    max_completion_tokens: Int(ge=1) | None = None
    logprobs: bool = False
    top_logprobs: Int(ge=0, le=20) | None = None
    tools: list[dict[str, Any]] | None = None  # not supported (400) unless empty
    tool_choice: str | dict[str, Any] | None = None  # not supported (400) unless "none"
    response_format: dict[str, Any] | None = None  # only {"type": "text"}
    parallel_tool_calls: bool | None = None


class ImageRequest(Strict):
    model: str
    prompt: str | None = None  # text-to-image: the description; class-conditional GANs: a class name
    n: Int(ge=1, le=256) = 1
    size: str | None = None  # "WxH": must be what the model makes (or "auto")
    response_format: Literal["b64_json", "url"] | None = None  # only b64_json (PNG)
    output_format: Literal["png"] | None = None
    seed: Seed | None = None  # genforge extra
    label: Int() | str | None = None  # genforge extra: class index or name for class-conditional GANs
    guidance: Float(ge=0.0, le=100.0) | None = None  # extra: text-to-image
    user: str | None = None


class ClassifyRequest(Strict):
    model: str
    input: str | Annotated[list[str], Field(min_length=1, max_length=1024)]


class ImageClassifyRequest(Strict):
    model: str
    images: Annotated[list[str], Field(min_length=1, max_length=256)]  # base64 PNGs (a data: URL prefix is allowed)
