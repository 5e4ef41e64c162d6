"""Stable-SAM inside other tools (FiftyOne: `stablesam.integrations.fiftyone`, the [fiftyone] extra)."""
