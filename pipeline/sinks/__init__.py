"""Writers that own an output format; each writes to a temporary name and renames when complete."""
