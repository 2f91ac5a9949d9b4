"""LM responses: the paper's prompts, the model registry, generation plans and their resumable store."""
