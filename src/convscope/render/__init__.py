"""Rendering: figures (PNG) for every view."""
