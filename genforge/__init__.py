"""genforge: train, sample, evaluate and serve small generative models on your own data."""
__version__ = "0.1.0"


def load(path, device: str = "auto", dtype: str = "fp32"):
    """Load a trained run (directory, checkpoint file or hf:DIR) as a ready pipeline."""
    from .inference import load as _load
    return _load(path, device=device, dtype=dtype)
