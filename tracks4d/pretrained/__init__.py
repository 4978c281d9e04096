"""Models shipped with tracks4d (trained by our own command; see each MODEL_CARD.md).

  small/   the default model: `experiments/configs/tracks4d.py:small`.
"""

from __future__ import annotations

from pathlib import Path

SMALL = Path(__file__).resolve().parent / "small"


def default_model_path() -> Path:
  """The shipped default model folder (config.json + params/).

  Raises:
    ValueError: if it is missing (e.g. a partial checkout), naming the path.
  """
  if not (SMALL / "config.json").exists() or not (SMALL / "params").exists():
    raise ValueError(f"the shipped model is missing at {SMALL} (expected config.json and params/); "
                     "restore it from the repository or pass a model folder.")
  return SMALL
