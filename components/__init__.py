"""Custom TFX components of the MorphHR pipeline."""
