"""Backdoor removal: Fine-Pruning of ONNX classifiers with clean-data fine-tuning (see ``domain``)."""
