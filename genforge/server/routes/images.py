"""POST /v1/images/generations: images from GAN and text-to-image models, as base64 PNGs.

`n`, `size` (must be what the model makes, e.g. "28x28", or "auto"), `response_format`
b64_json (the default; "url" is refused), `seed` (extra). Class-conditional GANs take the class
as `label` (extra: index or name) or as a prompt naming one class ("7", "a handwritten 7"); without
either the n images go through the classes in turn (0, 1, 2, ...). Unconditional GANs take an empty
prompt. Text-to-image models need `prompt`; what they warn about (unknown words, a prompt with no
known word giving unconditional images) comes back in `warnings` (extra): the pipeline returns them
(`generate(..., return_warnings=True)`), so two models generating at once keep their own.
"""
from __future__ import annotations

import base64
import io
import re
import time

import anyio
import numpy as np
from fastapi import APIRouter, Request
from PIL import Image

from ...families.base import TextToImagePipeline
from ..errors import APIError
from ..schemas import ImageRequest
from ..state import IMAGE

router = APIRouter(tags=["images"])
ROUTE = "/v1/images/generations"


def png_b64(img: np.ndarray) -> str:
    """(H, W, C) uint8 -> base64 PNG."""
    arr = img[..., 0] if img.shape[-1] == 1 else img
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def named_classes(prompt: str, names: list[str]) -> list[int]:
    """The classes a prompt names as whole words ("a picture of a 7" -> [7]), in class order. Longer
    names are matched first and blanked out, so "ankle boot" does not also name "boot"."""
    text, found = prompt.lower(), []
    for i in sorted((i for i, n in enumerate(names) if n.strip()), key=lambda i: -len(names[i])):
        pattern = rf"(?<!\w){re.escape(names[i].lower())}(?!\w)"
        if re.search(pattern, text):
            found.append(i)
            text = re.sub(pattern, lambda m: " " * len(m.group()), text)
    return sorted(found)


def class_label(pipe, body: ImageRequest) -> int | None:
    """The class index asked for (label field, or a prompt naming a class), or None."""
    names = list(getattr(pipe, "class_names", []) or [])
    lookup = {n.lower(): i for i, n in enumerate(names)}
    label = body.label
    param = "label"
    if label is None and body.prompt and body.prompt.strip() and pipe.family == "gan":
        label, param = body.prompt.strip(), "prompt"
    if label is None:
        return None
    if pipe.num_classes == 0:
        raise APIError(400, f"{param}: this model is unconditional; it takes no class (send an empty prompt)",
                       param=param)
    if isinstance(label, str):
        if label.lower() in lookup:
            return lookup[label.lower()]
        if re.fullmatch(r"-?[0-9]{1,18}", label.strip()):  # ASCII digits only ("²".isdigit() is True)
            label = int(label)
        elif param == "prompt" and len(found := named_classes(label, names)) == 1:
            return found[0]
        elif param == "prompt" and found:
            raise APIError(400, f"prompt: names several classes ({', '.join(names[i] for i in found)}); "
                           "name one, or send it as `label`", param=param)
        else:
            shown = label if len(label) <= 40 else label[:40] + "..."
            raise APIError(400, f"{param}: unknown class {shown!r}; classes: {', '.join(names)}"[:1000], param=param)
    if not 0 <= label < pipe.num_classes:
        raise APIError(400, f"{param}: class index {label} is outside [0, {pipe.num_classes})", param=param)
    return label


@router.post("/v1/images/generations")
async def create_images(body: ImageRequest, request: Request):
    state = request.app.state.genforge
    served = state.get(body.model, IMAGE, ROUTE)
    pipe = served.pipeline
    if body.response_format == "url":
        raise APIError(400, "response_format: only b64_json is supported (genforge keeps no image store)",
                       param="response_format", code="unsupported_parameter")
    if body.n > state.settings.max_n:
        raise APIError(400, f"n: at most {state.settings.max_n} images per request", param="n")
    native = f"{pipe.image_size}x{pipe.image_size}"
    if body.size not in (None, "auto", native):
        raise APIError(400, f"size: model '{served.name}' makes {native} images, not {body.size}", param="size")
    kwargs = {"n": body.n, "seed": None if body.seed is None else body.seed % 2**63}
    if isinstance(pipe, TextToImagePipeline):
        if not body.prompt or not body.prompt.strip():
            raise APIError(400, "prompt: a text-to-image model needs a prompt", param="prompt")
        kwargs.update(prompt=body.prompt, guidance=body.guidance, return_warnings=True)
        if body.label is not None:
            raise APIError(400, "label: text-to-image models take a prompt, not a label", param="label")
    else:
        if body.guidance is not None:
            raise APIError(400, "guidance: only text-to-image models take a guidance scale", param="guidance")
        label = class_label(pipe, body)
        kwargs["labels"] = label

    def run():
        try:
            out = pipe.generate(**kwargs)
        except ValueError as e:
            param = next((p for p in ("prompt", "label", "guidance") if str(e).startswith(p)), None)
            raise APIError(400, str(e), param=param or ("label" if "label" in str(e) else None)) from None
        return out if kwargs.get("return_warnings") else (out, [])

    async with served.lock:
        images, said = await anyio.to_thread.run_sync(run)
    data = [{"b64_json": png_b64(img), "revised_prompt": None} for img in images]
    return {"created": int(time.time()), "data": data, "output_format": "png", "size": native,
            **({"warnings": said} if said else {})}
