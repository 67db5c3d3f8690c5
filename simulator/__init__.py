"""Cluster simulator and trace replay: the yardstick that compares policies on the same trace."""
