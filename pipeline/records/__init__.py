"""Per-dataset parsers that turn raw files into plain records."""
