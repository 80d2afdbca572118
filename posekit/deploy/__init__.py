"""Deployment: ONNX export and runtime (onnx.py), fast inference backends (backends.py), checkpoint conversion
(convert.py), benchmarks (bench.py), FLOPs (flops.py) and the model card (modelcard.py)."""
