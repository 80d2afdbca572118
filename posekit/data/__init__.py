"""Readers (annotation files -> PersonRecord), transforms, and the top-down dataset."""
from .records import NOT_LABELLED, OCCLUDED, VISIBLE, PersonRecord

__all__ = ["PersonRecord", "NOT_LABELLED", "OCCLUDED", "VISIBLE"]
