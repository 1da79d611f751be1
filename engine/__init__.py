"""doinfer: compile one declarative YAML spec into running, benchmarked inference servers."""

__version__ = "0.1.0"
