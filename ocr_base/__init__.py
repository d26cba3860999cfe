"""ocr_base: the floor under both networks (docs/architecture.md).

Low-level code that the detector (detector_np) and the recogniser (trocr_np) both use, and that
knows about neither: torch-free checkpoint reading and memory-mapped safetensors (checkpoint),
image loading (image_io), the worker-thread pool (threads), atomic file writes (files) and the plane
geometry of text regions (geometry). Nothing here imports detector_np or trocr_np.
"""
