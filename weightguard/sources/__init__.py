"""Sources: where a model's bytes come from (local paths, Hugging Face snapshots)."""

from weightguard.sources.interface import ArtifactFile, ByteSource, BytesSource, ModelSource, SliceSource, SourceListing

__all__ = ["ArtifactFile", "ByteSource", "BytesSource", "ModelSource", "SliceSource", "SourceListing"]
