"""TFX pipeline definition and its runners (penguin-template layout)."""
