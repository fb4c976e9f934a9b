"""Pure functions shared by every dataset: cleaning, BPE, dictionary mapping."""
