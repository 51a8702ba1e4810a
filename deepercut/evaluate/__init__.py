"""Metrics and evaluation protocols."""

#: Seeds of held-out synthetic images start here; training draws from seeded generator streams
#: instead, so the two never share an image.
HELD_OUT_SEED = 1_000_000
