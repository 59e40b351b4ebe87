"""goldloop server side: the CLI, the Label Studio stack, import, export and the active-learning loop."""

__version__ = "0.1.0"
