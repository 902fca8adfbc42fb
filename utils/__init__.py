"""Shared helpers that know nothing about the rest of hyperflux."""
