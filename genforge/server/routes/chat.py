"""POST /v1/chat/completions: a conversation rendered as plain text, continued by a GPT model.

The chat template (plain text, so it works with character vocabularies too):

    System: {system or developer message}\n\n
    User: {user message}\n\n
    Assistant: {assistant message}\n\n
    ...
    Assistant:

and generation also stops at "\nUser:" (the model starting the next turn), with finish_reason
"stop". Content may be a string or a list of text parts; tool calls are not supported.
"""
from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..errors import APIError, error_response
from ..generation import (ClientGone, Generation, chat_logprobs, check_context, check_unsupported, encode, new_id,
                          sampling_params, stop_list, usage)
from ..schemas import ChatRequest
from ..state import TEXT
from .completions import SSE_HEADERS

router = APIRouter(tags=["text"])
ROUTE = "/v1/chat/completions"
ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
TURN_STOP = "\nUser:"
DEFAULT_MAX_TOKENS = 256


def render(messages) -> str:
    """Messages -> the plain-text chat template above."""
    parts = []
    for i, m in enumerate(messages):
        if m.role == "tool" or getattr(m, "tool_calls", None):
            raise APIError(400, f"messages[{i}]: tool messages and tool calls are not supported",
                           param=f"messages.{i}", code="unsupported_parameter")
        content = m.content
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else part.type
                where = f"messages.{i}.content.{j}"
                if kind != "text":
                    raise APIError(400, f"{where}: content parts of type {str(kind)[:40]!r} are not supported "
                                   "(text only)", param=f"messages.{i}.content", code="unsupported_parameter")
                text = part.get("text") if isinstance(part, dict) else part.text
                if not isinstance(text, str):
                    got = "missing" if text is None else f"a {type(text).__name__}"
                    raise APIError(400, f"{where}.text: a text part needs `text`, a string (got {got})",
                                   param=f"{where}.text")
                texts.append(text)
            content = "".join(texts)
        parts.append(f"{ROLES[m.role]}: {content or ''}\n\n")
    return "".join(parts) + "Assistant:"


@router.post("/v1/chat/completions")
async def create_chat_completion(body: ChatRequest, request: Request):
    state = request.app.state.genforge
    served = state.get(body.model, TEXT, ROUTE)
    check_unsupported(body, state.settings)
    if body.tools:
        raise APIError(400, "tools are not supported", param="tools", code="unsupported_parameter")
    if body.tool_choice not in (None, "none"):
        raise APIError(400, "tool_choice is not supported", param="tool_choice", code="unsupported_parameter")
    if body.response_format and body.response_format.get("type") != "text":
        raise APIError(400, "response_format: only {\"type\": \"text\"} is supported", param="response_format",
                       code="unsupported_parameter")
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    ids = encode(served, render(body.messages), "messages")
    check_context(served, ids, "messages")
    max_tokens = body.max_completion_tokens or body.max_tokens or min(DEFAULT_MAX_TOKENS, state.settings.max_tokens_limit)
    params = sampling_params(body, max_tokens, (body.top_logprobs or 0) if body.logprobs else None, state.settings)
    gen = Generation(served, [ids], body.n, params, stop_list(body.stop) + [TURN_STOP], state.metrics, ROUTE,
                     state.settings.stream_interval if body.stream else 0.0)
    gen.start()
    head = {"id": new_id("chatcmpl"), "created": int(time.time()), "model": served.name, "system_fingerprint": None}

    if body.stream:
        chunk_head = {**head, "object": "chat.completion.chunk"}
        first = [{**chunk_head, "choices": [{"index": c.index, "delta": {"role": "assistant", "content": ""},
                                             "logprobs": None, "finish_reason": None} for c in gen.choices]}]

        def chunk(c, text, tokens):
            if not text and not c.finish_reason and not body.logprobs:
                return None
            delta = {"content": text} if text else {}
            lp = chat_logprobs(served, tokens) if body.logprobs else None
            return {**chunk_head, "choices": [{"index": c.index, "delta": delta, "logprobs": lp,
                                               "finish_reason": c.finish_reason}]}

        def final():
            if body.stream_options and body.stream_options.include_usage:
                return {**chunk_head, "choices": [], "usage": usage(gen.prompt_tokens, gen.completion_tokens)}

        return StreamingResponse(gen.stream(first, chunk, final), media_type="text/event-stream", headers=SSE_HEADERS)
    try:
        await gen.collect(request)
    except ClientGone:
        return error_response(499, "the client closed the request", code="client_closed")
    choices = [{"index": c.index, "message": {"role": "assistant", "content": c.text, "refusal": None},
                "logprobs": chat_logprobs(served, c.tokens) if body.logprobs else None,
                "finish_reason": c.finish_reason} for c in gen.choices]
    return {**head, "object": "chat.completion", "choices": choices,
            "usage": usage(gen.prompt_tokens, gen.completion_tokens)}
