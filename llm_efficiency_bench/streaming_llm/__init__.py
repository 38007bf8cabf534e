"""StreamingLLM (Xiao et al., ICLR 2024): attention-sink KV cache, exact chunked evaluation, experiments."""
