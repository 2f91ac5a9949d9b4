"""affalign: the affective alignment of language models with groups of people, as one Ray Data job."""

__version__ = "0.1.0"
