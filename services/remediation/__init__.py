"""Backdoor removal: Fine-Pruning of ONNX classifiers with clean-data fine-tuning (see ``domain``), as a
library, the ``bdguard remediate`` commands and a worker on the bus (``python -m services.remediation``)."""
