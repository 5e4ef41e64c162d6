"""Evaluation and reports: the prompt and click protocols, their metrics, the searched worst
cases, what the mask token attends to, and what `stablesam eval` writes."""
