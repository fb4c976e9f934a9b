"""Getting verified bytes: HTTP with resume, the Hugging Face hub, mirrors, safe archive reading."""
