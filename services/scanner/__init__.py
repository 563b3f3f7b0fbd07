"""Model scanning: backdoor detectors, their ONNX adapter, scan use cases and CLI."""
