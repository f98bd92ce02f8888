"""POST /v1/completions: continue one prompt or a list of prompts (text or token ids), n samples each.

Supports max_tokens, temperature (0 = greedy), top_p, top_k (extra), n, stop (<= 4 strings),
seed, stream (+ stream_options.include_usage), logprobs (<= 5), echo and best_of == n.
`suffix` (insertion) is refused with 400: GPT models only continue text.
"""
from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..errors import APIError, error_response
from ..generation import (ClientGone, Generation, check_context, check_unsupported, completion_logprobs, encode,
                          new_id, sampling_params, stop_list, usage)
from ..schemas import CompletionRequest
from ..state import TEXT

router = APIRouter(tags=["text"])
ROUTE = "/v1/completions"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def prompts_of(served, prompt) -> tuple[list[str], list[list[int]]]:
    """The request's prompt(s) as texts (for echo) and token ids."""
    if isinstance(prompt, str):
        prompt = [prompt]
    elif prompt and isinstance(prompt[0], int):
        prompt = [prompt]
    texts, ids = [], []
    vocab = served.engine.vocab_size  # the model's (label tokens included), torch or ONNX
    for p in prompt:
        if isinstance(p, str):
            texts.append(p)
            ids.append(encode(served, p, "prompt"))
        else:
            if max(p) >= vocab:
                raise APIError(400, f"prompt: token id {max(p)} is outside this model's vocabulary of {vocab}",
                               param="prompt")
            texts.append(served.pipeline.tokenizer.decode(p))
            ids.append(list(p))
        check_context(served, ids[-1], "prompt")
    return texts, ids


@router.post("/v1/completions")
async def create_completion(body: CompletionRequest, request: Request):
    state = request.app.state.genforge
    served = state.get(body.model, TEXT, ROUTE)
    check_unsupported(body, state.settings)
    if body.suffix:
        raise APIError(400, "suffix is not supported: genforge GPT models continue text, they do not insert",
                       param="suffix", code="unsupported_parameter")
    if body.echo and body.logprobs is not None:
        raise APIError(400, "echo together with logprobs is not supported", param="echo",
                       code="unsupported_parameter")
    if body.best_of is not None and body.best_of != body.n:
        raise APIError(400, "best_of is only supported equal to n", param="best_of", code="unsupported_parameter")
    texts, ids = prompts_of(served, body.prompt)
    if len(ids) * body.n > state.settings.max_n * 4:
        raise APIError(400, f"at most {state.settings.max_n * 4} completions (prompts x n) per request", param="n")
    params = sampling_params(body, body.max_tokens or 16, body.logprobs, state.settings)
    gen = Generation(served, ids, body.n, params, stop_list(body.stop), state.metrics, ROUTE,
                     state.settings.stream_interval if body.stream else 0.0)
    gen.start()
    rid, created = new_id("cmpl"), int(time.time())
    head = {"id": rid, "object": "text_completion", "created": created, "model": served.name,
            "system_fingerprint": None}

    def logprobs_of(c, tokens, offsets, base):
        return None if body.logprobs is None else completion_logprobs(served, tokens, offsets, base)

    if body.stream:
        first = [{**head, "choices": [{"index": c.index, "text": texts[c.prompt_index], "logprobs": None,
                                        "finish_reason": None} for c in gen.choices]}] if body.echo else []

        def chunk(c, text, tokens):
            if not text and not c.finish_reason and body.logprobs is None:
                return None
            lp = logprobs_of(c, tokens, c.offsets[-len(tokens):] if tokens else [], 0)
            return {**head, "choices": [{"index": c.index, "text": text, "logprobs": lp,
                                         "finish_reason": c.finish_reason}]}

        def final():
            if body.stream_options and body.stream_options.include_usage:
                return {**head, "choices": [], "usage": usage(gen.prompt_tokens, gen.completion_tokens)}

        return StreamingResponse(gen.stream(first, chunk, final), media_type="text/event-stream", headers=SSE_HEADERS)
    try:
        await gen.collect(request)
    except ClientGone:
        return error_response(499, "the client closed the request", code="client_closed")
    choices = []
    for c in gen.choices:
        prefix = texts[c.prompt_index] if body.echo else ""
        choices.append({"index": c.index, "text": prefix + c.text,
                        "logprobs": logprobs_of(c, c.tokens, c.offsets, 0), "finish_reason": c.finish_reason})
    return {**head, "choices": choices, "usage": usage(gen.prompt_tokens, gen.completion_tokens)}
