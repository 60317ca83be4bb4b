"""Inference for users: the Python API (`api`), ONNX export and onnxruntime, compositing,
predict's outputs, video, the HTTP service and the demo."""
