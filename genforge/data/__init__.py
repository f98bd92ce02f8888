"""Everything about data: tokenizers, corpus reading and token caches, downloads.

Nothing here imports a model family.
"""
