"""charlm: character-level text generation with a stacked LSTM, trained on any UTF-8 novel.

import charlm
model = charlm.train("novel.txt", max_time="10m")
print(charlm.generate(model, "It was", length=200, temperature=0.8))
model = charlm.load("checkpoints/novel-20260101-120000")
"""

from .api import generate, load, stream, train
from .config import Config, SampleConfig
from .errors import CharLMError
from .model import CharLM, ModelConfig

__all__ = ["CharLM", "CharLMError", "Config", "ModelConfig", "SampleConfig", "generate", "load", "stream", "train"]
__version__ = "0.1.0"
