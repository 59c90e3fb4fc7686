"""The trading cycle's stages as plain functions of arrays: universe, features, decisions, sizing.

The path-dependent stages (position-aware filters, risk gates, orders, execution,
accounting) live in the compiled core, which both drivers call.
"""
