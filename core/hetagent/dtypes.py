"""The numeric types hetagent knows, and their storage size: one list shared by the IR, models and hardware."""

# Bytes per element; fp4 packs two elements per byte.
BYTES_PER_ELEMENT: dict[str, float] = {
    "fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "fp4": 0.5,
}
DTYPES: tuple[str, ...] = tuple(BYTES_PER_ELEMENT)
# The KV cache's dtype for models served in a dtype: none below 8 bits (TensorRT-LLM's and vLLM's FP4 checkpoints
# keep an FP8 cache); the others keep their own.
KV_CACHE_DTYPE: dict[str, str] = {"fp4": "fp8"}
