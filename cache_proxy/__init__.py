"""aiohttp cache proxy: the public `/predict` API in front of Triton and Redis."""
