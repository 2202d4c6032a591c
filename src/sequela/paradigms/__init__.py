"""The transfer-based and encoder-based paradigms: a model reused for a new task, SimCLR pre-training
and BadEncoder."""
