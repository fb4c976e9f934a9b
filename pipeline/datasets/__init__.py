"""One module per dataset, wiring sources → records → transforms → sinks into CLI stages."""
