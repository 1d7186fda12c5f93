"""Logits Convex Optimization (LCO, V1 and V2): losses, numerical checks, gradient dynamics, training arms."""
