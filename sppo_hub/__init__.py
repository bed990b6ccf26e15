"""sppo-hub: Hub-native Self-Play Preference Optimization."""
__version__ = "0.1.0"
