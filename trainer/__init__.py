"""Train and evaluate DistilBERT SST-2 classifiers (offline and, with hub access, fine-tuned)."""
