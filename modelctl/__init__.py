"""Get a DistilBERT SST-2 checkpoint and install it where Triton loads it.

Sources: the pinned Hugging Face hub revision, or offline stand-ins with the
real checkpoint format (random weights, clearly marked), or a local path.
"""
