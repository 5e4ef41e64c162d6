"""`stablesam demo`: an interactive page comparing SAM and Stable-SAM on your own prompts."""

from .app import bind, create_app, server, url

__all__ = ["bind", "create_app", "server", "url"]
