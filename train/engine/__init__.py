"""Training engine: where it runs (device, precision, processes) and how it steps."""
