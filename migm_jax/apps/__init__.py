"""Glue between the command-line entry points and the library (conversion, sampling)."""
