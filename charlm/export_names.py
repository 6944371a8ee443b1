"""The names `charlm export` takes for --format and --weights. The export package turns them into files;
kept apart from it so that Tab completion offers them without importing torch (seconds, at every Tab
press), as device_names.py does for --device."""

FORMATS = ("html", "onnx", "safetensors")
WEIGHTS = ("fp32", "fp16", "int8")  # the html page's stored precision
# The page's default: half of fp32's size, log-probabilities within a few thousandths of a nat (docs/export.md).
HTML_WEIGHTS = "fp16"
