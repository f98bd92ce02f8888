"""Everything about data: tokenizers, corpus reading and token caches, image sets (labelled or
captioned), JSONL rows, downloads.

Nothing here imports a model family. Rendering images (grids, PNGs) lives in `genforge.images`.
"""
