"""Settings of hyperflux: `load_settings()` layers config/default.yaml, a user file and the
environment into one validated, immutable `Settings`."""

from config.loader import DEFAULTS_FILE, KEYS, load_settings, unknown_env_vars
from config.settings import Settings

__all__ = ["DEFAULTS_FILE", "KEYS", "Settings", "load_settings", "unknown_env_vars"]
