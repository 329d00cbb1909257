"""The HTTP edge's shapes, one module per resource."""
