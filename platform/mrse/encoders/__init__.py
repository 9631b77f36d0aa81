"""Frozen pretrained encoders (MiniLM text, EfficientNet-Lite0 image) and their feature cache."""
