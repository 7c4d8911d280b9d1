"""saliq subpackage."""
