"""The model zoo: bundled trained checkpoints, found by name, and user checkpoints by path.

``tiny-digits``: a CSDformer-style transformer (16 tokens, dim 32, 2 heads, 2 blocks,
``L = 4``) trained with quantization-aware training on the bundled 8 x 8 digits. Reproduce it
with ``python -m spikeforge.models.train --out models/zoo/tiny-digits.npz`` (see
``docs/models.md`` for its measured accuracy).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .checkpoint import FloatCheckpoint, load_checkpoint
from .errors import SpikeForgeError

__all__ = ["available_models", "model_path", "load_model"]

_BUNDLED = {"tiny-digits": "tiny-digits.npz"}
#: Bundled float models of the training-free MBE path, and the commands that take them.
MBE_MODELS = ("tiny-digits-mlp", "tiny-digits-vit")
MBE_MODELS_WHERE = "convert/map/simulate/sweep (the MLP) and demo (the ViT)"


def available_models() -> list[str]:
    """Names of the bundled models."""
    return sorted(_BUNDLED)


def model_path(name_or_path: str | Path) -> Path:
    """Path of a bundled model by name, or of a user checkpoint file."""
    key = str(name_or_path)
    if key in _BUNDLED:
        return Path(str(resources.files(__package__).joinpath("zoo", _BUNDLED[key])))
    path = Path(key)
    if not path.exists():
        raise SpikeForgeError(
            f"no bundled model or file called {key!r}; bundled CSDformer models: {', '.join(available_models())} "
            f"(the MBE models {', '.join(MBE_MODELS)} are taken by {MBE_MODELS_WHERE})."
        )
    return path


def load_model(name_or_path: str | Path) -> FloatCheckpoint:
    """Load a bundled model by name or a checkpoint file by path."""
    return load_checkpoint(model_path(name_or_path))
