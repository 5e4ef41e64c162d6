"""Prompts: the prompt types and how they are drawn, and the searched (adversarial) prompts."""
