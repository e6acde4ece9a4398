"""MobileNet V1, V2 and V3 in JAX/Flax, built from architecture tables."""
