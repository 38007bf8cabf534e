"""Fourier-VLM (arXiv 2508.06038): DCT compression of vision tokens, FLOPs and speed against LLaVA-v1.5."""
