"""Export: the prompt path as an ONNX file, and its check in onnxruntime."""
