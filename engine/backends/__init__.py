"""Backends that run a model: llama.cpp now; MLX, ONNX Runtime and cloud APIs plug in the same way."""
