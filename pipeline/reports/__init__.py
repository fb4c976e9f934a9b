"""Reports over several datasets (manifests, Table 1, preview), driven by the recipe registry."""
