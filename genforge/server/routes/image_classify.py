"""POST /v1/images/classifications (genforge's own route): base64 images in, a label with class
probabilities per image out, from image classifier runs (family imageclf).

    {"model": "mnist-cnn", "images": ["iVBORw0KGgo...", "data:image/png;base64,iVBOR..."]}
    -> {"object": "list", "model": "mnist-cnn", "data": [{"index": 0, "label": "7", "probs": {...}}, ...]}

Each image is a base64 PNG (JPEG, BMP, ... also decode), with or without a data: URL prefix. An
image of another size or colour mode is resized and converted to the model's (as the training
loader does); the response's `size` says what the model saw. Bad base64, bytes that are no image
and images over data/images.MAX_PIXELS are 400s naming `images[i]`.
"""
from __future__ import annotations

import base64
import binascii

import anyio
from fastapi import APIRouter, Request

from ..errors import APIError
from ..schemas import ImageClassifyRequest
from ..state import IMAGE_CLASSIFY

router = APIRouter(tags=["classify"])
ROUTE = "/v1/images/classifications"


def decode_b64(text: str, where: str) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{where}: not valid base64", param="images") from None


@router.post(ROUTE)
async def classify_images(body: ImageClassifyRequest, request: Request):
    served = request.app.state.genforge.get(body.model, IMAGE_CLASSIFY, ROUTE)
    pipe = served.pipeline
    names = [f"images[{i}]" for i in range(len(body.images))]
    blobs = [decode_b64(text, name) for text, name in zip(body.images, names)]

    def run():
        try:
            return pipe.classify(pipe.read_images(blobs, names))
        except ValueError as e:
            raise APIError(400, str(e), param="images") from None

    async with served.lock:
        results = await anyio.to_thread.run_sync(run)
    data = [{"index": i, "label": r["label"], "probs": r["probs"]} for i, r in enumerate(results)]
    return {"object": "list", "model": served.name, "size": f"{pipe.image_size}x{pipe.image_size}", "data": data}
