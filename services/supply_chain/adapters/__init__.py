"""I/O side of the supply-chain checks: files, formats, inspectors, signatures, onnxruntime."""
