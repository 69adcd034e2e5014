"""aggregator: poll news feeds, normalize and deduplicate articles, re-export merged feeds."""

__version__ = "0.1.0"
