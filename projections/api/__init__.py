"""The HTTP query API over the projections."""
