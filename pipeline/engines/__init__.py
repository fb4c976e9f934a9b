"""Machinery that recipes configure: fetch loop, text binarization, image-text sharding, tarball
bucketing, the web crawl of first-N reachable rows. Engines never name a dataset."""
